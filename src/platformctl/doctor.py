"""``platform doctor``: what this machine has and lacks for each thing the tool does, with the
command that fixes each gap. Nothing here talks to the network: a check that needed it (is the
token valid?) would make the doctor as slow and as flaky as the problem it diagnoses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformctl.errors import PlatformError, redact
from platformctl.model import Repo, find_root, load_repo

# The test suite's real components (scripts/lib/components.sh installs them as root).
TEST_COMPONENTS = ("docker-registry", "prometheus")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    # what was found, or what is missing
    detail: str
    # what the check is for; required checks make the doctor exit 1
    needed_for: str
    required: bool = False
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "ok": self.ok,
            "required": self.required,
            "needed_for": self.needed_for,
            "detail": self.detail,
            "fix": None if self.ok else self.fix,
        }


def _git(root: Path | None, *args: str) -> str | None:
    """A git query's output, or None when git has no answer."""
    try:
        result = subprocess.run(
            ["git", *(["-C", str(root)] if root else []), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def diagnose(start: Path) -> list[Check]:
    """Every check, in the order a new user would fix them."""
    checks = [_git_installed()]
    try:
        root: Path | None = find_root(start)
        repo: Repo | None = load_repo(root) if root else None
        checks.append(Check("repository", True, str(root), "every command", required=True))
    except PlatformError as error:
        root, repo = None, None
        checks.append(
            Check(
                "repository",
                False,
                str(error),
                "every command",
                required=True,
                fix="cd into a clone of the platform repository (or pass --repo PATH)",
            )
        )
    checks.extend(_identity(root))
    checks.append(_remote(root))
    if repo is not None:
        checks.extend(_tokens(repo))
        checks.extend(_registries(repo))
    checks.append(_github_token())
    checks.append(_aws())
    if root is not None:
        checks.append(_pre_commit(root))
    checks.extend(_components())
    return checks


def _git_installed() -> Check:
    version = _git(None, "--version")
    return Check(
        "git",
        version is not None,
        version or "git is not on PATH",
        "every command",
        required=True,
        fix="sudo apt-get install git",
    )


def _identity(root: Path | None) -> Iterator[Check]:
    for key, example in (("user.name", '"Your Name"'), ("user.email", "you@example.com")):
        value = _git(root, "config", key)
        yield Check(
            f"git {key}",
            value is not None,
            value or "not set",
            "commits (promote, rollback, hold)",
            required=True,
            fix=f"git config --global {key} {example}",
        )


def _remote(root: Path | None) -> Check:
    url = _git(root, "remote", "get-url", "origin") if root else None
    return Check(
        "git remote origin",
        url is not None,
        redact(url) if url else "no remote 'origin'",
        "--push and --pull-request",
        fix="git remote add origin <the repository's URL>",
    )


def _variable(name: str, needed_for: str, value: str = "token") -> Check:
    present = bool(os.environ.get(name))
    return Check(
        f"${name}",
        present,
        "set" if present else "not set",
        needed_for,
        fix=f"export {name}=<{value}> (from your secret store; never commit it)",
    )


def _tokens(repo: Repo) -> Iterator[Check]:
    """The variables each environment names for its endpoints (one check per variable)."""
    from platformctl.argocd import DEFAULT_TOKEN_ENV

    uses: dict[tuple[str, str], list[str]] = {}
    for env in repo.environments:
        if env.argocd is not None:
            variable = env.argocd.token_env or DEFAULT_TOKEN_ENV
            uses.setdefault((variable, "token"), []).append(f"Argo CD of {env.name}")
        if env.prometheus is not None and env.prometheus.token_env:
            key = (env.prometheus.token_env, "token")
            uses.setdefault(key, []).append(f"Prometheus of {env.name}")
        if env.webhook_url_env:
            key = (env.webhook_url_env, "webhook URL")
            uses.setdefault(key, []).append(f"notifications of {env.name}")
    for (variable, value), what in uses.items():
        yield _variable(variable, ", ".join(what), value)


def _registries(repo: Repo) -> Iterator[Check]:
    """Credentials for the registries the images come from: ECR through AWS, others through
    the docker config, as the registry gate reads them."""
    from platformctl.oci import ECR_HOST, docker_config_credentials

    hosts = sorted({release.image.repository.split("/")[0] for release in repo.releases.values()})
    for host in hosts:
        if ECR_HOST.match(host):
            continue  # the AWS credentials check covers it
        try:
            found = docker_config_credentials(host) is not None
            detail = "in the docker config" if found else "no credentials: anonymous pulls only"
        except PlatformError as error:
            found, detail = False, str(error)
        yield Check(
            f"registry {host}",
            found,
            detail,
            "the registry and signature gates",
            fix=f"docker login {host}",
        )


def _github_token() -> Check:
    return _variable("GITHUB_TOKEN", "--pull-request and `platform ci`")


def _aws() -> Check:
    """AWS credentials as boto3 would find them, without asking the instance metadata service
    (a laptop has none, and asking costs seconds)."""
    import boto3

    saved = os.environ.get("AWS_EC2_METADATA_DISABLED")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        credentials = boto3.Session().get_credentials()
    except Exception as error:  # a broken profile is a finding, not a crash
        credentials, problem = None, f"{type(error).__name__}: {error}"
    else:
        problem = "none found (environment, profile, SSO or web identity)"
    finally:
        if saved is None:
            os.environ.pop("AWS_EC2_METADATA_DISABLED", None)
        else:
            os.environ["AWS_EC2_METADATA_DISABLED"] = saved
    return Check(
        "AWS credentials",
        credentials is not None,
        f"from {credentials.method}" if credentials is not None else problem,
        "ECR images in the registry gate, `pulumi up`",
        fix="aws sso login (or export AWS_PROFILE=<profile>)",
    )


def _pre_commit(root: Path) -> Check:
    hooks = _git(root, "rev-parse", "--git-path", "hooks")
    hook = (root / hooks / "pre-commit") if hooks else None
    installed = (
        hook is not None and hook.is_file() and "pre-commit" in hook.read_text(errors="replace")
    )
    return Check(
        "pre-commit hooks",
        installed,
        "installed" if installed else "not installed",
        "ruff, mypy and verify before each commit",
        fix="uv run pre-commit install",
    )


def _components() -> Iterator[Check]:
    for binary in TEST_COMPONENTS:
        path = shutil.which(binary)
        yield Check(
            binary,
            path is not None,
            path or "not on PATH",
            "the test suite (./scripts/test installs it when run as root)",
            fix=f"sudo apt-get install {binary}",
        )
