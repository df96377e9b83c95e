"""The git CLI, so users' credential helpers, hooks and commit signing keep working."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platformctl.errors import EnvironmentProblem, InputError


class GitError(EnvironmentProblem):
    """git failed; the message carries git's own first line of complaint."""


class Git:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        try:
            result = subprocess.run(
                ["git", "-C", str(self.root), *args],
                input=input_text,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            )
        except FileNotFoundError:
            raise EnvironmentProblem(
                "git is not installed", hint="install it (apt-get install git)"
            ) from None
        if check and result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            reason = next((line for line in lines if line.startswith(("fatal", "error"))), None)
            raise GitError(f"git {args[0]} failed: {reason or (lines[0] if lines else '?')}")
        return result.stdout

    def attempt(self, *args: str) -> tuple[bool, str]:
        """Run git where failure is an expected outcome: (succeeded, stderr)."""
        result = subprocess.run(
            ["git", "-C", str(self.root), *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
        return result.returncode == 0, result.stderr

    def ok(self, *args: str) -> bool:
        return self.attempt(*args)[0]

    def head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()

    def branch(self) -> str:
        """The current branch; a detached HEAD is refused (a commit there would be lost)."""
        name = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        if not name:
            raise InputError(
                "HEAD is detached", hint="check out a branch (git switch main) and run again"
            )
        return name

    def require_clean(self) -> None:
        """Refuse to start on uncommitted changes, so a failure can restore exactly."""
        status = self.run("status", "--porcelain", "--untracked-files=all")
        if status.strip():
            first = status.splitlines()[0][3:]
            raise InputError(
                f"uncommitted changes in the working tree ({first})",
                hint="commit or stash them first (git stash -u)",
            )

    def upstream(self, branch: str) -> tuple[str, str]:
        """(remote, remote branch) that ``branch`` pushes to."""
        remote = self.run("config", f"branch.{branch}.remote", check=False).strip()
        if not remote:
            remotes = self.run("remote").split()
            if not remotes:
                raise EnvironmentProblem(
                    "no git remote to push to", hint="git remote add origin URL, or drop --push"
                )
            remote = "origin" if "origin" in remotes else remotes[0]
        merge = self.run("config", f"branch.{branch}.merge", check=False).strip()
        return remote, merge.removeprefix("refs/heads/") or branch

    def show(self, revision: str, path: str) -> str | None:
        result = subprocess.run(
            ["git", "-C", str(self.root), "show", f"{revision}:{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout if result.returncode == 0 else None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize writers on one clone (held for the whole edit-verify-commit-push)."""
        git_dir = Path(self.run("rev-parse", "--absolute-git-dir").strip())
        with (git_dir / "platform.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
