"""The pipeline definitions are checked like code: actionlint, checkov and our own rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.model import NAME_MAX, NAME_PATTERN, TAG_PATTERN, load_repo
from tests.pipelines.test_cli_contract import invocations

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text())
    return document


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_pipelines_exist() -> None:
    names = {path.stem for path in WORKFLOWS}
    assert {"pull-request", "main", "promote", "rollback", "drift"} <= names
    assert {"service-build", "discover"} <= names


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [BIN / "actionlint", "-no-color", "-oneline", *WORKFLOWS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkovs_github_actions_checks_pass() -> None:
    result = subprocess.run(
        [
            BIN / "checkov",
            "--skip-download",
            "--framework",
            "github_actions",
            "-d",
            ROOT / ".github" / "workflows",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert summary["passed"] > 100
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {"CKV_GHA_7"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_pinned_actions_and_no_spliced_expressions(path: Path) -> None:
    workflow = _load(path)
    # Nothing by default; each job asks for what it needs.
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name} has no permissions of its own"
        assert "write-all" not in json.dumps(job["permissions"])
    for step in _steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"].split(" ")[0]), step["uses"]
        if "run" in step:
            # Inputs and event fields reach scripts as variables, never spliced into them.
            assert "${{" not in step["run"], step["run"]
    assert "AWS_SECRET_ACCESS_KEY" not in path.read_text()


def test_deployments_run_in_order_one_at_a_time_behind_environments() -> None:
    main = _load(ROOT / ".github/workflows/main.yml")
    jobs = main["jobs"]
    assert [jobs[s]["with"]["stack"] for s in ("dev", "staging", "production")] == [
        "dev",
        "staging",
        "production",
    ]
    assert (jobs["staging"]["needs"], jobs["production"]["needs"]) == ("dev", "staging")
    stack = _load(ROOT / ".github/workflows/pulumi-stack.yml")["jobs"]["up"]
    assert stack["environment"] == "${{ inputs.stack }}"
    assert stack["concurrency"] == {
        "group": "pulumi-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }


def test_releases_run_in_the_targets_environment() -> None:
    release = _load(ROOT / ".github/workflows/release.yml")["jobs"]["release"]
    assert release["environment"] == "${{ inputs.environment }}"
    for name in ("promote", "rollback"):
        workflow = _load(ROOT / f".github/workflows/{name}.yml")
        inputs = workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
        assert {"services", "environment", "reason"} <= set(inputs)
        assert workflow["jobs"][name]["with"]["operation"] == name


def test_gitlab_includes_the_pipeline_and_has_the_same_stages() -> None:
    assert _load(ROOT / ".gitlab-ci.yml")["include"] == [{"local": "pipelines/gitlab-ci.yml"}]
    gitlab = _load(ROOT / "pipelines/gitlab-ci.yml")
    assert gitlab["stages"] == ["checks", "preview", "deploy", "release", "drift"]
    scripts = json.dumps(gitlab)
    for script in (
        "pipelines/pull-request",
        "pipelines/infra up",
        "pipelines/release",
        "pipelines/drift",
    ):
        assert script in scripts


def test_pre_commit_runs_the_same_tools() -> None:
    hooks = {
        hook["id"]
        for repo in _load(ROOT / ".pre-commit-config.yaml")["repos"]
        for hook in repo["hooks"]
    }
    assert hooks == {"ruff", "ruff-format", "mypy", "yamllint", "platform-verify"}


def test_yamllint_passes() -> None:
    result = subprocess.run(
        [BIN / "yamllint", "--strict", "."], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_jobs_that_talk_to_a_cluster_run_inside_its_network() -> None:
    """Finding 4: GitHub-hosted runners reach no private API endpoint, so `pulumi up`, the
    previews (they diff Kubernetes objects) and drift run on the runner labelled with their
    stack, which sits in a network apiAccessCidrs admits; nothing else needs one. Releases run
    on the target's: `--wait` and the gates ask internal Argo CD and Prometheus URLs."""
    inside = {
        ("pulumi-stack.yml", "up"): "${{ inputs.stack }}",
        ("release.yml", "release"): "${{ inputs.environment }}",
        ("pull-request.yml", "preview"): "${{ matrix.stack }}",
        ("drift.yml", "drift"): "${{ matrix.stack }}",
    }
    for (name, job_name), stack in inside.items():
        job = _load(ROOT / ".github/workflows" / name)["jobs"][job_name]
        assert job["runs-on"] == ["self-hosted", "linux", f"platform-{stack}"], name
        if "matrix" in stack:
            assert job["strategy"]["matrix"]["stack"] == ["dev", "staging", "production"]
    for path in WORKFLOWS:
        for job_name, job in _load(path)["jobs"].items():
            if (path.name, job_name) not in inside and "runs-on" in job:
                assert "self-hosted" not in json.dumps(job["runs-on"]), (path.name, job_name)
    labels = _load(ROOT / ".github/actionlint.yaml")["self-hosted-runner"]["labels"]
    assert labels == ["platform-dev", "platform-staging", "platform-production"]
    gitlab = _load(ROOT / "pipelines/gitlab-ci.yml")
    for job_name in (".deploy", "preview", "drift"):
        assert gitlab[job_name]["tags"] == ["platform-$STACK"], job_name
    assert gitlab["release"]["tags"] == ["platform-$ENVIRONMENT"]


USES_LINE = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?P<rest>.*)$"
)


def test_every_pin_names_its_release_and_each_action_has_one_pin() -> None:
    """A bare SHA says nothing to the reader or to an update bot; two pins of one action in
    two workflows means one of them missed an update."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES_LINE.match(line)
            if match is None or match["action"].startswith("./"):
                continue
            assert re.fullmatch(r"\s*# v\d+(\.\d+)*", match["rest"]), f"{path.name}:{number}"
            pins.setdefault(match["action"], set()).add(match["ref"] + match["rest"])
    assert pins, "no pinned action found"
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


OIDC_STEP = re.compile(r"aws-actions/configure-aws-credentials@|pipelines/aws-oidc")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_jobs_that_assume_a_role_get_an_oidc_token(path: Path) -> None:
    for name, job in _load(path)["jobs"].items():
        wants_token = job["permissions"].get("id-token") == "write"
        # A job that calls a workflow passes its token on to the jobs of that workflow.
        assumes = "uses" in job or any(
            OIDC_STEP.search(step.get("uses", "") + step.get("run", ""))
            for step in job.get("steps", [])
        )
        assert wants_token == assumes, f"{path.name}: {name}"


SERVICE_BUILD = ROOT / ".github/workflows/service-build.yml"


def _service_build() -> dict[Any, Any]:
    return _load(SERVICE_BUILD)


def _step(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(step for step in job["steps"] if step.get("name") == name)


def _uses(job: dict[str, Any], action: str) -> dict[str, Any]:
    return next(step for step in job["steps"] if step.get("uses", "").startswith(action + "@"))


def test_service_build_is_called_with_this_contract() -> None:
    """What a service repository's caller relies on: renaming or making anything required
    here breaks every service's CI at once."""
    call = _service_build()[True]["workflow_call"]
    inputs = call["inputs"]
    required = {name for name, spec in inputs.items() if spec.get("required")}
    assert required == {"service", "tag", "aws-role-arn", "aws-region"}
    assert set(inputs) - required == {
        "ecr-repository",
        "context",
        "dockerfile",
        "publish",
        "platform-repository",
    }
    assert all(spec["type"] == "string" for spec in inputs.values())
    assert inputs["publish"]["default"] == "pull-request"
    secrets = {name: spec.get("required", False) for name, spec in call["secrets"].items()}
    assert secrets == {"COSIGN_PRIVATE_KEY": True, "COSIGN_PASSWORD": False, "PLATFORM_TOKEN": True}
    assert call["outputs"]["digest"]["value"] == "${{ jobs.build.outputs.digest }}"


def test_service_build_publishes_to_the_repository_argo_cd_watches() -> None:
    default = _service_build()[True]["workflow_call"]["inputs"]["platform-repository"]["default"]
    assert load_repo(ROOT).repository_url.removesuffix(".git").endswith(f"github.com/{default}")


def test_service_build_gives_each_secret_and_permission_to_one_job() -> None:
    jobs = _service_build()["jobs"]
    assert (jobs["build"]["needs"], jobs["publish"]["needs"]) == ("inputs", "build")
    assert jobs["inputs"]["permissions"] == {}
    assert jobs["build"]["permissions"] == {"contents": "read", "id-token": "write"}
    # Writes to this repository go through PLATFORM_TOKEN, not the caller's own token.
    assert jobs["publish"]["permissions"] == {"id-token": "write"}
    for secret, owner in (("COSIGN_PRIVATE_KEY", "build"), ("PLATFORM_TOKEN", "publish")):
        using = {name for name, job in jobs.items() if f"secrets.{secret}" in json.dumps(job)}
        assert using == {owner}, secret
    for name, job in jobs.items():
        assert job["timeout-minutes"] <= 45, name
    assert jobs["publish"]["concurrency"] == {
        "group": "service-publish-${{ inputs.service }}",
        "cancel-in-progress": False,
    }


def test_service_build_signs_and_attests_the_pushed_digest_in_the_gates_format() -> None:
    build = _service_build()["jobs"]["build"]
    digest = "@${{ steps.build.outputs.digest }}"
    image = "${{ steps.image.outputs.image }}" + digest
    assert _step(build, "Sign the digest")["env"]["IMAGE"] == image
    assert _step(build, "Attest the SBOM")["env"]["IMAGE"] == image
    assert _uses(build, "anchore/sbom-action")["with"]["image"] == image
    sign = _step(build, "Sign the digest")["run"].replace("\\\n", " ")
    attest = _step(build, "Attest the SBOM")["run"].replace("\\\n", " ")
    # The signature gate reads the legacy sha256-<hex>.sig tag; cosign 3 writes a bundle
    # through the referrers API unless asked not to.
    legacy = "--new-bundle-format=false --use-signing-config=false"
    for command, script in (("cosign sign", sign), ("cosign attest", attest)):
        assert re.search(rf"{command} --yes --key env://COSIGN_PRIVATE_KEY .*{legacy}", script)
    assert "--type spdxjson" in attest
    assert re.search(
        r"cosign verify --key \S+ --insecure-ignore-tlog\s+--new-bundle-format=false", sign
    )
    assert _uses(build, "sigstore/cosign-installer")["with"]["cosign-release"].startswith("v3.")


def test_service_build_calls_publish_with_the_option_names_of_issue_21() -> None:
    """The names `platform publish` is being built with (issue 21). Whether the CLI has them
    is test_cli_contract's job, over every workflow: it fails while `publish` does not exist."""
    [(_, _, flags)] = [call for call in invocations([SERVICE_BUILD]) if call[1] == ("publish",)]
    assert flags == {
        "--tag",
        "--digest",
        "--source-commit",
        "--build-url",
        "--pull-request",
        "--push",
    }
    publish = _step(_service_build()["jobs"]["publish"], "Publish the build")
    assert publish["env"]["DIGEST"] == "${{ needs.build.outputs.digest }}"
    assert publish["env"]["GITHUB_TOKEN"] == "${{ secrets.PLATFORM_TOKEN }}"
    assert "env -u GITHUB_REPOSITORY" in publish["run"]


def _check_inputs(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    step = _step(
        _service_build()["jobs"]["inputs"], "Refuse anything that is not a name, a tag or a mode"
    )
    env = dict.fromkeys(step["env"], "")
    env.update(
        SERVICE="svc-a",
        TAG="1.4.2",
        REGION="eu-west-1",
        PUBLISH="pull-request",
        PLATFORM_REPOSITORY="acme-corp/platform",
    )
    env.update(values)
    output = tmp_path / "output"
    output.write_text("")
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env={"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output), **env},
        capture_output=True,
        text=True,
        check=False,
    )


NAMES = [
    "a",
    "svc-a",
    "a1",
    "x" * 53,
    "x" * 54,
    "User",
    "-a",
    "a-",
    "a_b",
    "a/b",
    "../a",
    "--push",
    "",
]
TAGS = ["1.4.2", "v1.0.0-rc.1", "_x", "a" * 128, "a" * 129, ".x", "-x", "1.0+build", "a b", ""]


@pytest.mark.parametrize("name", NAMES)
def test_the_input_check_accepts_exactly_the_service_names_the_cli_does(
    tmp_path: Path, name: str
) -> None:
    result = _check_inputs(tmp_path, SERVICE=name, REPOSITORY="svc-a")
    accepted = bool(NAME_PATTERN.match(name)) and len(name) <= NAME_MAX
    assert (result.returncode == 0) == accepted, result.stdout
    if not accepted:
        assert result.returncode == 2
        assert result.stdout.startswith("::error::service ")


@pytest.mark.parametrize("tag", TAGS)
def test_the_input_check_accepts_exactly_the_tags_the_cli_does(tmp_path: Path, tag: str) -> None:
    result = _check_inputs(tmp_path, TAG=tag)
    assert (result.returncode == 0) == bool(TAG_PATTERN.match(tag)), result.stdout


def test_the_input_check_refuses_what_would_split_a_line_or_pick_the_mode(tmp_path: Path) -> None:
    injected = "1.0\n::add-mask::x"
    result = _check_inputs(tmp_path, TAG=injected, PUBLISH="--force", REPOSITORY="Bad/Repo")
    assert result.returncode == 2
    # One line per refusal, the value escaped: nothing it holds becomes a workflow command.
    assert [line.split(" ")[0] for line in result.stdout.splitlines()] == [
        "::error::tag",
        "::error::ecr-repository",
        "::error::publish",
    ]
    assert (tmp_path / "output").read_text() == ""
    ok = _check_inputs(tmp_path, REPOSITORY="team/svc-a")
    assert ok.returncode == 0, ok.stdout
    assert (tmp_path / "output").read_text() == "repository=team/svc-a\n"
    _check_inputs(tmp_path)
    assert (tmp_path / "output").read_text() == "repository=svc-a\n"


def test_discover_runs_on_a_schedule_and_pushes() -> None:
    workflow = _load(ROOT / ".github/workflows/discover.yml")
    assert workflow[True]["schedule"][0]["cron"]
    assert [words for _, words, _ in invocations([ROOT / ".github/workflows/discover.yml"])] == [
        ("discover",)
    ]
    [(_, _, flags)] = invocations([ROOT / ".github/workflows/discover.yml"])
    assert flags == {"--push"}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_the_readmes_caller_example_meets_the_contract() -> None:
    """The example teams copy: every required input and secret, nothing the workflow lacks,
    and the permissions its jobs ask for (a caller cannot grant less)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From a service's build to dev") :]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    [caller] = example["jobs"].values()
    assert caller["uses"].startswith("acme-corp/platform/.github/workflows/service-build.yml@")
    call = _service_build()[True]["workflow_call"]
    required = {name for name, spec in call["inputs"].items() if spec.get("required")}
    assert required <= set(caller["with"]) <= set(call["inputs"])
    assert set(caller["secrets"]) == set(call["secrets"])
    for name, job in _service_build()["jobs"].items():
        assert job["permissions"].items() <= caller["permissions"].items(), name
