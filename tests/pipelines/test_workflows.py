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

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text())
    return document


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_five_pipelines_exist() -> None:
    names = {path.stem for path in WORKFLOWS}
    assert {"pull-request", "main", "promote", "rollback", "drift"} <= names


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
