"""The git CLI, so users' credential helpers and commit signing keep working.

Writes go through plumbing (``write_commit``): the blobs and tree are built in a temporary
index from files outside the working tree, ``commit-tree`` makes the commit and
``update-ref <ref> <new> <old>`` moves the branch only if nobody else did. Nothing the user
sees changes before that last, atomic step.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import signal
import subprocess
import tempfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import IO

from platformctl.errors import EnvironmentProblem, InputError, redact

# Test-only hook: PLATFORM_FAULT=<step> kills the process with SIGKILL when it reaches that
# step boundary (see ``fault``), so tests can prove that a crash there loses nothing.
FAULT_VARIABLE = "PLATFORM_FAULT"


def fault(step: str) -> None:
    """A step boundary: with PLATFORM_FAULT=<step> (tests only) the process dies right here."""
    if os.environ.get(FAULT_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class GitError(EnvironmentProblem):
    """git failed; the message carries git's own first line of complaint."""


def _complaint(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith(("fatal", "error"))), None)
    return redact(reason or (lines[0] if lines else "?"))


class BlobReader:
    """Contents of (revision, path) pairs, asked of a running ``git cat-file --batch``."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin, self._stdout = process.stdin, process.stdout

    def read(self, revision: str, path: str) -> bytes | None:
        """The file at ``revision``, or None where it does not exist."""
        self._stdin.write(f"{revision}:{path}\n".encode())
        self._stdin.flush()
        header = self._stdout.readline().rstrip(b"\n")
        if not header:
            raise GitError("git cat-file failed: it stopped answering")
        if header.endswith((b" missing", b" ambiguous")):
            return None
        size = int(header.rsplit(b" ", 1)[1])
        return self._stdout.read(size + 1)[:size]


class ObjectBatch:
    """Objects asked of one ``git cat-file --batch --buffer`` while the asker goes on with
    other work (reading the log that names them): git writes its answers to a temporary file,
    so asking never waits for a reader and git reads the objects as they are asked, on a core
    of its own. ``ready`` hands over what git has answered so far (for the asker's pauses),
    ``answers`` the rest once every object has been asked."""

    # how much of the answers one read takes: the rest waits in the file, not in memory
    _CHUNK = 1 << 20

    def __init__(self, process: subprocess.Popen[bytes], output: IO[bytes], errors: IO[bytes]):
        assert process.stdin is not None
        self._process, self._stdin = process, process.stdin
        self._output, self._errors = output, errors
        self._asked = self._answered = self._read = 0
        self._unparsed = bytearray()

    def ask(self, *names: str) -> None:
        """Ask for objects by id or ``revision:path``, sent to git at once; their answers
        come in asking order."""
        try:
            self._stdin.write("".join(f"{name}\n" for name in names).encode())
            self._stdin.flush()
        except BrokenPipeError:
            self._failed()
        self._asked += len(names)

    def ready(self) -> list[bytes | None]:
        """The answers git has written since the last call, in asking order, without waiting
        for more (None where an object does not exist)."""
        while self._read_more():
            pass
        return self._parse()

    def answers(self) -> Iterator[bytes | None]:
        """Every answer not yet handed over, in order, once git has answered them all."""
        try:
            self._stdin.close()
        except BrokenPipeError:
            self._failed()
        if self._process.wait() != 0:
            self._failed()
        while self._answered < self._asked:
            more = self._read_more()
            found = self._parse()
            if not more and not found:
                raise GitError("git cat-file failed: it stopped answering")
            yield from found

    def _read_more(self) -> bool:
        chunk = os.pread(self._output.fileno(), self._CHUNK, self._read)
        self._read += len(chunk)
        self._unparsed += chunk
        return bool(chunk)

    def _parse(self) -> list[bytes | None]:
        """The complete answers at the start of what was read (``<id> blob <size>``, the
        contents and a newline; ``<name> missing``), taken off it."""
        data, position, found = self._unparsed, 0, list[bytes | None]()
        while self._answered < self._asked:
            end = data.find(b"\n", position)
            if end < 0:
                break
            header = bytes(data[position:end])
            if header.endswith((b" missing", b" ambiguous")):
                found.append(None)
                position = end + 1
            else:
                start = end + 1
                size = int(header.rsplit(b" ", 1)[1])
                if len(data) < start + size + 1:
                    break
                found.append(bytes(data[start : start + size]))
                position = start + size + 1
            self._answered += 1
        del data[:position]
        return found

    def _failed(self) -> None:
        self._process.wait()
        self._errors.seek(0)
        complaint = _complaint(self._errors.read().decode(errors="replace"))
        raise GitError(f"git cat-file failed: {complaint}")


class Git:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _process(
        self, args: tuple[str, ...], input_text: str | None, env: Mapping[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", "-C", str(self.root), *args],
                input=input_text,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})},
            )
        except FileNotFoundError:
            raise EnvironmentProblem(
                "git is not installed", hint="install it (apt-get install git)"
            ) from None

    def run(
        self,
        *args: str,
        input_text: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> str:
        result = self._process(args, input_text, env)
        if check and result.returncode != 0:
            raise GitError(f"git {args[0]} failed: {_complaint(result.stderr)}")
        return result.stdout

    def attempt(self, *args: str) -> tuple[bool, str]:
        """Run git where failure is an expected outcome: (succeeded, stderr)."""
        result = self._process(args, None, None)
        return result.returncode == 0, result.stderr

    def ok(self, *args: str) -> bool:
        return self.attempt(*args)[0]

    @cached_property
    def git_dir(self) -> Path:
        return Path(self.run("rev-parse", "--absolute-git-dir").strip())

    @cached_property
    def config(self) -> dict[str, str]:
        """Every configuration value, read once (``git config --list -z``: one process)."""
        found: dict[str, str] = {}
        for item in self.run("config", "--list", "-z", check=False).split("\0"):
            key, _, value = item.partition("\n")
            if key:
                found[key.lower()] = value
        return found

    def rev(self, revision: str) -> str | None:
        """The commit ``revision`` names, or None."""
        ok, _ = self.attempt("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        return self.run("rev-parse", f"{revision}^{{commit}}").strip() if ok else None

    def head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()

    def branch(self) -> str:
        """The current branch; a detached HEAD (or a rebase or bisect) is refused."""
        name = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        for marker, what in (
            ("rebase-merge", "a rebase is in progress"),
            ("rebase-apply", "a rebase or am is in progress"),
            ("MERGE_HEAD", "a merge is in progress"),
            ("CHERRY_PICK_HEAD", "a cherry-pick is in progress"),
            ("REVERT_HEAD", "a revert is in progress"),
            ("BISECT_LOG", "a bisect is in progress"),
        ):
            if (self.git_dir / marker).exists():
                raise InputError(what, hint="finish or abort it (git status says how), then rerun")
        if not name:
            raise InputError(
                "HEAD is detached", hint="check out a branch (git switch main) and run again"
            )
        return name

    def require_clean(self) -> None:
        """Refuse to start on uncommitted changes or a held index lock."""
        if (self.git_dir / "index.lock").exists():
            raise EnvironmentProblem(
                f"{self.git_dir / 'index.lock'} exists: another git command is running or crashed",
                hint="if no git command is running, delete that file and run again",
            )
        status = self.run("--no-optional-locks", "status", "--porcelain", "--untracked-files=all")
        if status.strip():
            first = status.splitlines()[0][3:]
            raise InputError(
                f"uncommitted changes in the working tree ({first})",
                hint="commit or stash them first (git stash -u)",
            )

    def upstream(self, branch: str) -> tuple[str, str]:
        """(remote, remote branch) that ``branch`` pushes to."""
        remote = self.config.get(f"branch.{branch}.remote", "")
        if not remote:
            remotes = sorted(
                {key.split(".")[1] for key in self.config if key.startswith("remote.")}
            )
            if not remotes:
                raise EnvironmentProblem(
                    "no git remote to push to", hint="git remote add origin URL, or drop --push"
                )
            remote = "origin" if "origin" in remotes else remotes[0]
        merge = self.config.get(f"branch.{branch}.merge", "")
        return remote, merge.removeprefix("refs/heads/") or branch

    def show(self, revision: str, path: str) -> str | None:
        result = self._process(("show", f"{revision}:{path}"), None, None)
        return result.stdout if result.returncode == 0 else None

    def output(self, *args: str, input_bytes: bytes = b"") -> bytes:
        """Run git for its raw output (blobs and archives are bytes, not text)."""
        try:
            result = subprocess.run(
                ["git", "-C", str(self.root), *args],
                input=input_bytes,
                capture_output=True,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            )
        except FileNotFoundError:
            raise EnvironmentProblem(
                "git is not installed", hint="install it (apt-get install git)"
            ) from None
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            raise GitError(f"git {args[0]} failed: {_complaint(stderr)}")
        return result.stdout

    def _environment(self) -> dict[str, str]:
        return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

    def _start(
        self,
        args: Sequence[str],
        errors: IO[bytes],
        stdin: int | None = None,
        stdout: int | IO[bytes] = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                ["git", "-C", str(self.root), *args],
                stdin=stdin,
                stdout=stdout,
                stderr=errors,
                env=self._environment(),
            )
        except FileNotFoundError:
            raise EnvironmentProblem(
                "git is not installed", hint="install it (apt-get install git)"
            ) from None

    def records(self, *args: str, separator: str) -> Generator[str, None, None]:
        """The output of a git command, record by record as git writes it: a reader that stops
        early (a rollback that finds its release among the newest commits) ends git there,
        instead of waiting for it to walk the whole history."""
        with tempfile.TemporaryFile() as errors:
            yield from self._records(self._start(args, errors), args[0], errors, separator)

    @staticmethod
    def _records(
        process: subprocess.Popen[bytes], command: str, errors: IO[bytes], separator: str
    ) -> Iterator[str]:
        assert process.stdout is not None
        finished = False
        try:
            pending = ""
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while chunk := os.read(process.stdout.fileno(), 65536):
                pending += decoder.decode(chunk)
                *complete, pending = pending.split(separator)
                yield from complete
            if pending.strip():
                yield pending
            finished = True
        finally:
            if not finished:
                process.kill()
            process.stdout.close()
            code = process.wait()
            if finished and code != 0:
                errors.seek(0)
                complaint = _complaint(errors.read().decode(errors="replace"))
                raise GitError(f"git {command} failed: {complaint}")

    @contextmanager
    def blobs(self) -> Iterator[BlobReader]:
        """One ``git cat-file --batch`` answering requests one at a time, for readers that do
        not know in advance how many versions they will need."""
        with tempfile.TemporaryFile() as errors:
            process = self._start(["cat-file", "--batch"], errors, stdin=subprocess.PIPE)
            try:
                yield BlobReader(process)
            finally:
                assert process.stdin is not None
                assert process.stdout is not None
                process.stdin.close()
                process.stdout.close()
                process.wait()

    @contextmanager
    def object_batch(self) -> Iterator[ObjectBatch]:
        """A ``git cat-file --batch`` that reads objects while the caller asks for more (see
        ``ObjectBatch``); it is ended on leaving, whether or not its answers were read."""
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
            args = ["cat-file", "--batch", "--buffer"]
            process = self._start(args, errors, stdin=subprocess.PIPE, stdout=output)
            try:
                yield ObjectBatch(process, output, errors)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                assert process.stdin is not None
                with suppress(BrokenPipeError):
                    process.stdin.close()

    def read_files(self, items: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The contents of (revision, path) pairs through one ``git cat-file --batch``."""
        return self.read_objects([f"{revision}:{path}" for revision, path in items])

    def read_objects(self, names: Sequence[str]) -> list[bytes | None]:
        """The contents of objects through one ``git cat-file --batch``: blob ids, which git
        reads without walking a tree (about twice as fast), or ``revision:path`` names."""
        request = "".join(f"{name}\n" for name in names).encode()
        data = self.output("cat-file", "--batch", input_bytes=request)
        position, contents = 0, list[bytes | None]()
        for _ in names:
            end = data.index(b"\n", position)
            header = data[position:end]
            position = end + 1
            if header.endswith((b" missing", b" ambiguous")):
                contents.append(None)
                continue
            size = int(header.rsplit(b" ", 1)[1])
            contents.append(data[position : position + size])
            position += size + 1
        return contents

    def write_commit(
        self, parent: str, files: Mapping[str, str], message: str, *, sign: bool
    ) -> str:
        """A commit of ``parent`` with ``files`` (path relative to the root -> text) replaced.

        Four git processes, none of which touches the working tree, the index or a ref: the
        texts are written to a scratch folder, hashed into a temporary index read from the
        parent's tree, and committed with ``commit-tree`` (signed when commit.gpgSign asks).
        """
        with tempfile.TemporaryDirectory(prefix="platform-", dir=self.git_dir) as scratch:
            work = Path(scratch) / "tree"
            for relative, text in files.items():
                target = work / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.run("read-tree", parent, env=env)
            self.run("--work-tree", str(work), "update-index", "--add", "--", *files, env=env)
            tree = self.run("write-tree", env=env).strip()
        signing = ["-S"] if sign else []
        return self.run(
            "commit-tree", tree, "-p", parent, *signing, "-F", "-", input_text=message
        ).strip()

    def move_branch(self, branch: str, new: str, old: str, reason: str) -> bool:
        """Compare-and-swap the branch from ``old`` to ``new``; False if it was not at ``old``."""
        ok, stderr = self.attempt("update-ref", "-m", reason, f"refs/heads/{branch}", new, old)
        if not ok and "cannot lock ref" not in stderr and "but expected" not in stderr:
            raise GitError(f"git update-ref failed: {_complaint(stderr)}")
        return ok

    @property
    def signs_commits(self) -> bool:
        return self.config.get("commit.gpgsign", "false").lower() in ("true", "yes", "on", "1")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize writers on one clone (held from the plan to the push)."""
        path = self.git_dir / "platform.lock"
        try:
            handle = path.open("w")
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot write {path} ({error.strerror})",
                hint="the clone must be writable by you: check its owner and permissions",
            ) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
