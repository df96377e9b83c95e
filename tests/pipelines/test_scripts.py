"""Every script in pipelines/ run locally, in a fresh copy of this repository.

The copy holds exactly the files git would commit (tracked and new), so the scripts run as
they would in a fresh CI checkout. Pulumi cannot run here: a stand-in `pulumi` on PATH records
what the scripts ask of it. GitHub is a local server speaking the documented shapes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from platformctl.argocd import application_name
from platformctl.model import Image, load_repo
from tests.conftest import _without_gates, edit_yaml, git
from tests.release.fleet import write_image
from tests.support.argocd import TOKEN as ARGOCD_TOKEN
from tests.support.argocd import AppState as ArgoApp
from tests.support.argocd import FakeArgoCD
from tests.support.http import Request, serve

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = Path(sys.executable).parent / "platform"
FAKE_PULUMI = """#!/usr/bin/env bash
echo "$*" >> "$PULUMI_LOG"
case " $* " in *" --stack ${PULUMI_DRIFTS:-none} "*) echo "~ 1 to update"; exit 1 ;; esac
"""


MODEL = load_repo(ROOT)
SERVICES = MODEL.services
FIRST, *_, LAST = (env.name for env in MODEL.environments)
# What the pipeline scripts run through uv; the real tools run in scripts/test and in
# tests/pipelines/test_workflows.py, so here a stand-in records that each step calls them.
FAKE_UV = """#!/usr/bin/env bash
echo "$*" >> "$UV_LOG"
case "$1 $2 $3" in
  "run --frozen "ruff | "run --frozen "mypy | "run --frozen "pytest | "run --frozen "actionlint \\
    | "run --frozen "checkov) exit 0 ;;
esac
echo "stand-in uv: unexpected call: $*" >&2
exit 99
"""


@pytest.fixture(scope="module")
def argocd() -> Iterator[tuple[FakeArgoCD, str]]:
    fake = FakeArgoCD()
    for env in MODEL.environments:
        for service in SERVICES:
            fake.apps[application_name(service, env.name)] = ArgoApp()
    with serve(fake.handle) as url:
        yield fake, url


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, argocd: tuple[FakeArgoCD, str]) -> Path:
    """This repository's committable files in a new git repository: gates stripped, and every
    environment's Argo CD endpoint on the local stand-in."""
    target = tmp_path_factory.mktemp("pipelines") / "repo"
    files = git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    # Release scripts run offline: the gates would ask the example endpoints.
    edit_yaml(target / "environments/pipeline.yaml", _without_gates, sequence_indent=4)
    for env in (e.name for e in MODEL.environments):
        edit_yaml(
            target / f"environments/{env}/environment.yaml",
            lambda data: data["endpoints"]["argocd"].update(url=argocd[1]),
        )
    # No stack's platform:domain can name the stand-in, so `platform verify` would refuse
    # every stack file; the stacks are tested in tests/infra, Pulumi is a stand-in here.
    for stack in target.glob("Pulumi.*.yaml"):
        stack.unlink()
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "ci@example.com"),
        ("config", "user.name", "CI"),
        ("add", "-A"),
        ("commit", "-q", "-m", "initial"),
    ):
        git(target, *args)
    return target


@pytest.fixture
def run(clone: Path, tmp_path: Path) -> Iterator[Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "pulumi.log"

    def runner(*args: str, pulumi: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        if pulumi:
            (bin_dir / "pulumi").write_text(FAKE_PULUMI)
            (bin_dir / "pulumi").chmod(0o755)
        else:
            (bin_dir / "pulumi").unlink(missing_ok=True)
        variables = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("GITHUB_", "PR_")) and k != "VIRTUAL_ENV"
            },
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PULUMI_LOG": str(log),
            "PIPELINE_OUT": str(tmp_path / "out"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            **{f"ARGOCD_TOKEN_{env}": ARGOCD_TOKEN for env in ("DEV", "STAGING", "PRODUCTION")},
            **env,
        }
        return subprocess.run(
            [str(clone / "pipelines" / args[0]), *args[1:]],
            cwd=clone,
            env=variables,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )

    runner.summary = lambda: (
        (tmp_path / "summary.md").read_text() if (tmp_path / "summary.md").exists() else ""
    )  # type: ignore[attr-defined]
    runner.pulumi = lambda: log.read_text().splitlines() if log.exists() else []  # type: ignore[attr-defined]
    runner.out = tmp_path / "out"  # type: ignore[attr-defined]
    runner.bin = bin_dir  # type: ignore[attr-defined]
    runner.workflows = list((clone / ".github/workflows").glob("*.yml"))  # type: ignore[attr-defined]
    return runner


class FakeGitHub:
    """Issues and issue comments, with GitHub's fields."""

    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []

    def handle(self, request: Request) -> tuple[int, Any]:
        path = request.path.removeprefix("/repos/acme-corp/platform")
        if request.method == "GET" and path == "/issues":
            return 200, [i for i in self.issues if request.query["labels"][0] in i["labels"]]
        if request.method == "POST" and path == "/issues":
            issue = {**request.body, "number": len(self.issues) + 1}
            self.issues.append(issue)
            return 201, issue
        if request.method == "PATCH" and path.startswith("/issues/") and "comments" not in path:
            issue = self.issues[int(path.rsplit("/", 1)[1]) - 1]
            issue.update(request.body)
            return 200, issue
        if path.endswith("/comments") and request.method == "GET":
            return 200, self.comments
        if path.endswith("/comments") and request.method == "POST":
            comment = {
                "id": len(self.comments) + 1,
                "body": request.body["body"],
                "html_url": "https://github.com/c",
            }
            self.comments.append(comment)
            return 201, comment
        if request.method == "PATCH" and "/issues/comments/" in path:
            comment = self.comments[int(path.rsplit("/", 1)[1]) - 1]
            comment["body"] = request.body["body"]
            return 200, comment
        return 404, {"message": "Not Found"}


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, dict[str, str]]]:
    fake = FakeGitHub()
    with serve(fake.handle) as url:
        yield (
            fake,
            {
                "GITHUB_API_URL": url,
                "GITHUB_TOKEN": "t0ken",
                "GITHUB_REPOSITORY": "acme-corp/platform",
            },
        )


def test_the_pull_request_script_end_to_end(
    run: Any, github: tuple[FakeGitHub, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = github
    uv_log = tmp_path / "uv.log"
    (run.bin / "uv").write_text(FAKE_UV)
    (run.bin / "uv").chmod(0o755)
    result = run(
        "pull-request",
        PYTEST_ARGS="-q -k smoke",
        BASE_REF="main",
        PR_NUMBER="42",
        PLATFORM_CLI=str(PLATFORM),
        UV_LOG=str(uv_log),
        **env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("lint", "types", "tests", "verify", "workflows", "preview"):
        assert f"==> {step}" in result.stderr
    calls = uv_log.read_text().splitlines()
    assert calls == [
        "run --frozen ruff check .",
        "run --frozen ruff format --check .",
        "run --frozen mypy",
        "run --frozen pytest -n auto --dist loadfile --cov --cov-report=term "
        f"--cov-report=xml:{run.out}/coverage.xml "
        "-q -k smoke",
        "run --frozen actionlint -no-color -oneline "
        + " ".join(f".github/workflows/{p.name}" for p in sorted(run.workflows)),
        "run --frozen checkov --quiet --compact --skip-download --framework github_actions "
        "-d .github/workflows",
    ]
    summary = run.summary()
    assert "## platform verify" in summary
    assert "no change under infra/" in summary
    # The verify report became one PR comment; a second run edits it instead of adding one.
    assert len(fake.comments) == 1
    assert "<!-- platform:verify -->" in fake.comments[0]["body"]
    again = run("pull-request", "verify", PR_NUMBER="42", PLATFORM_CLI=str(PLATFORM), **env)
    assert again.returncode == 0, again.stderr
    assert len(fake.comments) == 1


@pytest.mark.parametrize(("pytest_exit", "expected"), [(5, 1), (0, 0), (1, 1), (2, 2)])
def test_no_tests_collected_is_a_failure(tmp_path: Path, pytest_exit: int, expected: int) -> None:
    """check_tests (scripts/lib/checks.sh) turns pytest's exit 5 into a failure."""
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f"#!/usr/bin/env bash\nexit {pytest_exit}\n")
    fake_uv.chmod(0o755)
    script = f'UV={fake_uv}; source {ROOT}/scripts/lib/checks.sh; check_tests -q; echo "rc=$?"'
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.stdout.strip() == f"rc={expected}"
    assert ("pytest collected no tests" in result.stderr) == (pytest_exit == 5)


@pytest.mark.parametrize("script", ["scripts/test", "pipelines/pull-request"])
def test_the_checks_are_defined_once(script: str) -> None:
    """The quickstart's test command and the pull-request gate run the same checks."""
    text = (ROOT / script).read_text()
    assert "scripts/lib/checks.sh" in text
    for tool in ("ruff", "mypy", "pytest"):
        assert f"run --frozen {tool}" not in text, f"{script} runs {tool} itself"


def test_the_pull_request_script_refuses_an_unknown_step(run: Any) -> None:
    result = run("pull-request", "lint", "deploy")
    assert result.returncode == 2
    assert "unknown step 'deploy'" in result.stderr


def test_infra_asks_pulumi_with_the_policy_pack(run: Any) -> None:
    assert run("infra", "preview", "dev").returncode == 0
    assert run("infra", "up", "staging").returncode == 0
    assert run("infra", "drift", "production").returncode == 0
    assert run.pulumi() == [
        "preview --stack dev --policy-pack infra/policy --non-interactive --diff",
        "up --stack staging --policy-pack infra/policy --non-interactive --diff --yes",
        "preview --stack production --policy-pack infra/policy --non-interactive --diff"
        " --refresh --expect-no-changes",
    ]


def test_infra_refuses_bad_input_and_a_missing_pulumi(run: Any) -> None:
    unknown = run("infra", "preview", "qa")
    assert (unknown.returncode, "unknown stack 'qa'" in unknown.stderr) == (2, True)
    missing = run("infra", "preview", "dev", pulumi=False)
    assert missing.returncode == 3
    assert "pulumi is not installed" in missing.stderr
    assert run.pulumi() == []


def test_drift_reports_the_drifting_stack_and_opens_one_issue(
    run: Any, github: tuple[FakeGitHub, dict[str, str]]
) -> None:
    fake, env = github
    result = run("drift", PULUMI_DRIFTS="staging", PLATFORM_CLI=str(PLATFORM), **env)
    assert result.returncode == 1, result.stderr
    summary = run.summary()
    assert "`dev`: no drift" in summary
    assert "`staging`: **drift**" in summary
    assert "[Synced/Healthy]" in summary
    assert [issue["title"] for issue in fake.issues] == ["Infrastructure drift: staging"]
    # The next morning's run updates the same issue.
    assert run("drift", PULUMI_DRIFTS="staging", PLATFORM_CLI=str(PLATFORM), **env).returncode == 1
    assert len(fake.issues) == 1


def test_no_drift_exits_zero_and_opens_nothing(
    run: Any, github: tuple[FakeGitHub, dict[str, str]]
) -> None:
    fake, env = github
    assert run("drift", "dev", PLATFORM_CLI=str(PLATFORM), **env).returncode == 0
    assert fake.issues == []


def test_release_promote_dry_run_prints_the_plan(run: Any, clone: Path) -> None:
    """A new build in the first stage, then the release script's dry run into the next."""
    service, second = SERVICES[0], MODEL.environments[1].name
    values = clone / "environments" / FIRST / f"{service}.yaml"
    current = load_repo(clone).release(service, FIRST).image
    build = Image(current.repository, tag="9.9.9", digest="sha256:" + "ab" * 32)
    write_image(values, build)
    git(clone, "commit", "-qam", f"ci: {service} 9.9.9")
    head = git(clone, "rev-parse", "HEAD")
    result = run(
        "release",
        "promote",
        SERVICES=service,
        ENVIRONMENT=second,
        REASON="weekly release",
        DRY_RUN="true",
        PLATFORM_CLI=str(PLATFORM),
    )
    assert result.returncode == 0, result.stderr
    assert "9.9.9" in run.summary()
    assert "dry run" in run.summary()
    assert git(clone, "rev-parse", "HEAD") == head


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVICES": SERVICES[0], "ENVIRONMENT": LAST}, "REASON"),
        ({"SERVICES": SERVICES[0], "REASON": "x"}, "ENVIRONMENT"),
        ({"ENVIRONMENT": LAST, "REASON": "x"}, "set SERVICES"),
        (
            {"SERVICES": SERVICES[0][:-1], "ENVIRONMENT": LAST, "REASON": "x", "DRY_RUN": "true"},
            f"did you mean '{SERVICES[0]}'",
        ),
    ],
)
def test_release_refuses_incomplete_input(
    run: Any, clone: Path, env: dict[str, str], message: str
) -> None:
    status = git(clone, "status", "--porcelain")
    result = run("release", "promote", PLATFORM_CLI=str(PLATFORM), **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert git(clone, "status", "--porcelain") == status


def test_an_application_out_of_sync_is_drift_too(
    run: Any, github: tuple[FakeGitHub, dict[str, str]], argocd: tuple[FakeArgoCD, str]
) -> None:
    fake, env = github
    apps, _ = argocd
    app = application_name(SERVICES[0], LAST)
    apps.apps[app] = ArgoApp(sync="OutOfSync")
    try:
        # Each stack's job asks its own environment's Argo CD (from inside its network).
        result = run("drift", LAST, PLATFORM_CLI=str(PLATFORM), **env)
    finally:
        apps.apps[app] = ArgoApp()
    assert result.returncode == 1
    assert app in run.summary()
    assert [issue["title"] for issue in fake.issues] == ["Infrastructure drift: argocd"]
