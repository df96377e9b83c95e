"""The ledger believes only git's trailer block, and a release's time is when it reached the
watched branch (first-parent history), not when a pull-request commit was made."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from platformctl.cli import app
from platformctl.dora import deployments
from platformctl.gates.calendar import check_soak
from platformctl.gates.results import Verdict
from platformctl.git import Git, GitError
from platformctl.ledger import Entry, history, image_changes, values_path
from platformctl.model import load_repo
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, make_fleet


def _commit_at(fleet: Fleet, message: str, when: dt.datetime) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    subprocess.run(
        ["git", "-C", str(fleet.root), "commit", "-qa", "-F", "-"],
        input=message,
        text=True,
        check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )


def _history_after(tmp_path: Path, message: str) -> list[Entry]:
    """The last stage's history of alpha after a hand edit committed with ``message``
    (``{stage}`` in it is the stage's name)."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    stage = fleet.stages[-1]
    fleet.set_image(stage, "alpha", 2, commit=False)
    _commit_at(fleet, message.format(stage=stage), dt.datetime.now(dt.UTC))
    return history(Git(fleet.root), load_repo(fleet.root).release("alpha", stage))


def test_platform_lines_outside_the_trailer_block_are_not_believed(tmp_path: Path) -> None:
    forged = (
        "hand edit\n\n"
        "Platform-Action: rollback\nPlatform-Service: alpha\nPlatform-Environment: {stage}\n\n"
        "The paragraph above is body text: git's trailer block is the last paragraph.\n"
    )
    entries = _history_after(tmp_path, forged)
    assert [entry.action for entry in entries] == ["manual", "manual"]


def test_trailers_in_the_last_paragraph_are_the_record(tmp_path: Path) -> None:
    message = (
        "promote by a script\n\n"
        "Platform-Action: promote\nPlatform-Service: alpha\nPlatform-Environment: {stage}\n"
        "Platform-Reason: scheduled\n"
    )
    entry = _history_after(tmp_path, message)[0]
    assert (entry.action, entry.reason) == ("promote", "scheduled")


def test_a_merged_pull_request_counts_from_its_merge(tmp_path: Path) -> None:
    """A commit made three days ago and merged now has soaked for minutes, not three days."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    source = fleet.stages[0]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    git(fleet.root, "switch", "-q", "-c", "pr")
    fleet.set_image(source, "alpha", 2, commit=False)
    trailers = (
        f"Platform-Action: promote\nPlatform-Service: alpha\nPlatform-Environment: {source}\n"
    )
    _commit_at(fleet, f"build 2\n\n{trailers}", now - dt.timedelta(days=3))
    git(fleet.root, "switch", "-q", "main")
    git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #1", "pr")
    release = load_repo(fleet.root).release("alpha", source)
    entry = history(Git(fleet.root), release)[0]
    merged_at = dt.datetime.fromisoformat(entry.time)
    assert now - dt.timedelta(minutes=5) <= merged_at
    assert entry.commit == git(fleet.root, "rev-parse", "HEAD").strip()  # the merge
    assert entry.action == "promote"  # the evidence is the pull request's commit's
    soak = check_soak(Git(fleet.root), release, dt.timedelta(days=1), now + dt.timedelta(hours=1))
    assert soak.verdict is Verdict.failed, soak.measured


def test_a_history_git_cannot_read_is_exit_3_not_a_gate_to_override(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    source, target = fleet.stages[0], fleet.stages[1]

    def soak(pipeline: Any) -> None:
        pipeline["stages"][1]["gates"] = {"soak": {"minimum": "1h"}}

    edit_yaml(fleet.root / "environments/pipeline.yaml", soak, sequence_indent=4)
    git(fleet.root, "commit", "-qam", "soak before the second stage")
    fleet.set_image(source, "alpha", 2)
    first = git(fleet.root, "rev-list", "--max-parents=0", "HEAD").strip()
    (fleet.root / ".git" / "objects" / first[:2] / first[2:]).unlink()  # a corrupt clone
    before = git(fleet.root, "rev-parse", "HEAD")
    result = CliRunner().invoke(
        app, ["--repo", str(fleet.root), "promote", "alpha", "--to", target]
    )
    assert result.exit_code == 3, result.output
    assert "--override" not in result.stderr
    assert result.stderr.startswith("error: git log failed")
    assert git(fleet.root, "rev-parse", "HEAD") == before


def test_records_end_git_when_the_reader_stops_and_report_its_failure(tmp_path: Path) -> None:
    """A rollback reads the newest releases and stops: git must not walk on, nor linger."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for index in range(3):
        subprocess.run(
            ["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", f"c{index}"],
            check=True,
            env={
                **os.environ,
                "GIT_AUTHOR_NAME": "a",
                "GIT_AUTHOR_EMAIL": "a@b",
                "GIT_COMMITTER_NAME": "a",
                "GIT_COMMITTER_EMAIL": "a@b",
            },
        )
    repo = Git(tmp_path)
    records = repo.records("log", "--format=%s%x1e", separator="\x1e")
    assert next(records).strip() == "c2"
    records.close()
    every = repo.records("log", "--format=%s%x1e", separator="\x1e")
    assert [record.strip() for record in every] == ["c2", "c1", "c0"]
    with pytest.raises(GitError, match="git log failed"):
        list(repo.records("log", "no-such-revision", separator="\x1e"))
    with repo.blobs() as blobs:
        assert blobs.read("HEAD", "missing.txt") is None


def _pull_request_merged(tmp_path: Path, on_top: str) -> tuple[Fleet, str]:
    """A pull request promoting alpha into the first stage, with ``on_top`` done on its
    branch after the tool's commit ("update": main merged into it, GitHub's "Update branch";
    "commit": a commit of another file), merged with a merge commit of no trailers."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha", "beta"])
    stage = fleet.stages[0]
    git(fleet.root, "switch", "-q", "-c", "pr")
    fleet.set_image(stage, "alpha", 2, commit=False)
    trailers = f"Platform-Action: promote\nPlatform-Service: alpha\nPlatform-Environment: {stage}\n"
    git(fleet.root, "commit", "-qam", f"promote alpha\n\n{trailers}")
    git(fleet.root, "switch", "-q", "main")
    fleet.set_image(stage, "beta", 2)  # main moves on meanwhile
    git(fleet.root, "switch", "-q", "pr")
    if on_top == "update":
        git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge branch 'main' into pr", "main")
    else:
        (fleet.root / "NOTES.md").write_text("reviewed\n")
        git(fleet.root, "add", "NOTES.md")
        git(fleet.root, "commit", "-qm", "notes")
    git(fleet.root, "switch", "-q", "main")
    git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #2", "pr")
    return fleet, stage


@pytest.mark.parametrize("on_top", ["update", "commit"])
def test_a_merged_pull_request_speaks_through_its_commit_that_changed_the_file(
    tmp_path: Path, on_top: str
) -> None:
    """History, metrics and release sets read the same commit: the newest non-merge commit
    of the merged branch that changed the file, whatever was added on top of it."""
    fleet, stage = _pull_request_merged(tmp_path, on_top)
    repo = load_repo(fleet.root)
    release = repo.release("alpha", stage)
    merge = git(fleet.root, "rev-parse", "HEAD").strip()
    entry = history(Git(fleet.root), release)[0]
    assert (entry.commit, entry.action) == (merge, "promote")
    (found,) = [d for d in deployments(Git(fleet.root), repo, ["alpha"]) if d.commit == merge]
    assert found.action == "promote"
    change = next(image_changes(Git(fleet.root), [values_path(release)]))
    assert change.commit == merge
    assert change.made_by("promote", stage) == ["alpha"]
