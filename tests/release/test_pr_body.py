"""The promotion plan as the pull-request body: gates, the rendered diff per resource, the
policy delta and the change-risk class with the reviewers the stage declares for it.

Fixture fleets (tests/release/fleet.py) and the GitHub stand-in; the renders and findings are
the real Helm SDK's and the verify gate's."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from platformctl.cli.release_cmds import DRY_RUN_REVIEW_NOTE
from platformctl.dora import deployments
from platformctl.git import Git
from platformctl.ledger import history
from platformctl.model import Repo, load_repo
from platformctl.prbody import BODY_LIMIT, Review, review
from platformctl.release import Outcome, Plan, execute, plan_promotion, plan_texts, writing
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, bare_remote, clone_of, make_pipeline
from tests.support import github as fake_github
from tests.support.github import FakeGitHub

Cli = Callable[..., Any]
github = fake_github.github  # the fixture
SERVICES = ["svc-a", "svc-b"]
REVIEW = {"configuration": ["@acme-lead"], "structure": ["@acme-corp/platform", "@sre-oncall"]}
PRODUCTION = "environments/production/svc-a.yaml"


def _with_review(pipeline: Any) -> None:
    pipeline["stages"][-1]["review"] = REVIEW


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """svc-a newer in staging than in production, production declaring who reviews
    configuration and structure changes (made once; each test works on a copy)."""
    fleet = make_pipeline(tmp_path_factory.mktemp("pr-body") / "repo", SERVICES, ["svc-a"])
    edit_yaml(fleet.root / "environments/pipeline.yaml", _with_review, sequence_indent=4)
    git(fleet.root, "commit", "-qam", "review: per change-risk class")
    return fleet


@pytest.fixture
def work(template: Fleet, tmp_path: Path) -> Fleet:
    """A clone of a remote holding the template."""
    origin = replace(template, root=tmp_path / "origin")
    shutil.copytree(template.root, origin.root, symlinks=True)
    return clone_of(bare_remote(origin, tmp_path / "remote.git"), tmp_path / "work", origin, "dev")


def _state(root: Path) -> tuple[str, ...]:
    refs = git(root, "for-each-ref", "--format=%(refname) %(objectname)")
    return git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain", "-uall"), refs


def _summaries(body: str) -> list[str]:
    return re.findall(r"<summary>(.*?)</summary>", body)


def _promotion_with(root: Path, edit: Callable[[str], str]) -> tuple[Repo, Plan, dict[str, str]]:
    """The plan of promoting svc-a into production with ``edit`` applied to its values text:
    a promotion that carries a values change along with the image."""
    repo = load_repo(root)
    plan = plan_promotion(repo, ["svc-a"], to="production")
    texts = plan_texts(root, plan)
    texts[PRODUCTION] = edit(texts[PRODUCTION])
    return repo, plan, texts


def _open(root: Path, edit: Callable[[str], str]) -> Outcome:
    """Open the pull request of that promotion (the library's write path, as the CLI runs it)."""
    with writing(root) as session:
        repo, plan, texts = _promotion_with(root, edit)
        return execute(session, repo, plan, actor="dev", pull_request=True, texts=texts)


def _reviewed(root: Path, edit: Callable[[str], str]) -> Review:
    return review(*_promotion_with(root, edit))


def _without_image(fleet: Fleet, service: str) -> None:
    """``service`` not yet in production: its file there without an image line, pushed."""
    path = fleet.values("production", service)
    path.write_text(re.sub(r"^image: .*\n", "", path.read_text(), flags=re.MULTILINE))
    git(fleet.root, "commit", "-qam", f"{service} not yet in production")
    git(fleet.root, "push", "-q")


def _debug(text: str) -> str:
    return text.replace("LOG_LEVEL: info", "LOG_LEVEL: debug")


def test_an_image_only_promotion_is_class_image_asks_nobody_and_equals_the_dry_run(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    dry = cli(work.root, "promote", "svc-a", "--to", "production", "--dry-run", "-o", "markdown")
    assert dry.exit_code == 0, dry.output
    result = cli(work.root, "promote", "svc-a", "--to", "production", "--pull-request")
    assert result.exit_code == 0, result.output
    assert "change risk: image" in result.stdout
    body = github.pulls[1]["body"]
    # the dry run's document, then the commit's trailer block as the last paragraph
    branch = "origin/platform/promote/production/svc-a"
    git(work.root, "fetch", "-q")
    trailers = git(work.root, "log", "-1", "--format=%(trailers:only,unfold)", branch)
    assert trailers.startswith("Platform-Action: promote\n"), trailers
    assert dry.stdout.endswith(DRY_RUN_REVIEW_NOTE)
    document = dry.stdout.removesuffix(DRY_RUN_REVIEW_NOTE)
    assert body == f"{document}\n{trailers.strip()}\n"
    assert body.startswith("### promote(svc-a): staging → production 1.2.0\n")
    assert "**Change risk: image** (only image references change). Reviewers: none required." in (
        body
    )
    summaries = _summaries(body)
    assert summaries, body
    assert all(s.startswith("changed (image only): ") for s in summaries), summaries
    assert "changed (image only): Rollout apps/svc-a (production/svc-a)" in summaries
    old, new = work.image("production", "svc-a"), work.image("staging", "svc-a")
    assert f"-        image: {old.reference}\n" in body
    assert f"+        image: {new.reference}\n" in body
    assert "No finding added or removed." in body
    assert github.reviewers(1) == set()
    assert not [r for r in github.requests if r[1].endswith("/requested_reviewers")]


def test_a_squash_merge_of_title_and_description_keeps_the_record(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    """A repository whose squash message is "pull request title and description": the
    squashed commit's last paragraph is the body's, the tool's trailers, so history and
    metrics read a promotion, not a hand edit."""
    result = cli(work.root, "promote", "svc-a", "--to", "production", "--pull-request")
    assert result.exit_code == 0, result.output
    pull = github.pulls[1]
    git(work.root, "fetch", "-q")
    git(work.root, "merge", "-q", "--squash", "origin/platform/promote/production/svc-a")
    message = f"{pull['title']} (#1)\n\n{pull['body']}"
    subprocess.run(
        ["git", "-C", str(work.root), "commit", "-q", "-F", "-"],
        input=message,
        text=True,
        check=True,
    )
    squash = git(work.root, "rev-parse", "HEAD").strip()
    assert git(work.root, "rev-list", "--count", "--merges", "-1", "HEAD").strip() == "0"
    block = "--format=%(trailers:only,unfold)"
    tool = git(work.root, "log", "-1", block, "origin/platform/promote/production/svc-a")
    assert git(work.root, "log", "-1", block, squash) == tool
    repo = load_repo(work.root)
    entry = history(Git(work.root), repo.release("svc-a", "production"))[0]
    assert (entry.commit, entry.action, entry.from_environment) == (
        squash,
        "promote",
        "staging",
    )
    (found,) = [d for d in deployments(Git(work.root), repo, ["svc-a"]) if d.commit == squash]
    assert found.action == "promote"


def test_a_body_over_githubs_limit_drops_diffs_and_keeps_the_trailers_last(work: Fleet) -> None:
    reviewed = _reviewed(work.root, _debug)
    huge = "+ a line of a long rendered diff\n" * 4000
    big = replace(reviewed, resources=tuple(replace(r, diff=huge) for r in reviewed.resources))
    trailers = "Platform-Action: promote\nPlatform-Service: svc-a\n"
    body = big.markdown(trailers)
    assert len(body) <= BODY_LIMIT
    assert "(diff left out: the body would exceed GitHub's limit; see the commit)" in body
    assert body.endswith(f"No finding added or removed.\n\n{trailers}")


def test_a_re_run_replaces_the_body_of_the_same_pull_request(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    def freeze(pipeline: Any) -> None:
        window = {"name": "past", "from": "2020-01-01", "until": "2020-01-02"}
        gates = {"freeze": {"timezone": "Europe/Berlin", "windows": [window]}}
        pipeline["stages"][-1]["gates"] = gates

    edit_yaml(work.root / "environments/pipeline.yaml", freeze, sequence_indent=4)
    git(work.root, "commit", "-qam", "a freeze gate on production")
    git(work.root, "push", "-q")
    first = cli(work.root, "promote", "svc-a", "--to", "production", "--pull-request")
    assert first.exit_code == 0, first.output
    assert "1.2.0" in github.pulls[1]["body"]
    evidence = r"\| freeze \| \* \| passed \| no freeze window open \(\w{3} [-0-9]+ [:0-9]+ Europe/"
    assert re.search(evidence, github.pulls[1]["body"]), github.pulls[1]["body"]
    work.set_image("staging", "svc-a", 4)  # staging moved on before the review
    git(work.root, "push", "-q")
    again = cli(work.root, "promote", "svc-a", "--to", "production", "--pull-request")
    assert again.exit_code == 0, again.output
    assert "updated pull request #1" in again.stdout
    assert len(github.pulls) == 1
    body = github.pulls[1]["body"]
    assert github.pulls[1]["title"] == "promote(svc-a): staging → production 1.4.0"
    assert body.startswith("### promote(svc-a): staging → production 1.4.0\n")
    assert "1.2.0" not in body
    assert f"+        image: {work.image('staging', 'svc-a').reference}\n" in body
    assert ("PATCH", "/repos/acme-corp/platform/pulls/1") in github.requests


def test_a_hold_by_pull_request_renders_and_verifies_nothing(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    result = cli(
        work.root, "hold", "svc-a", "--env", "production", "--reason", "INC-7", "--pull-request"
    )
    assert result.exit_code == 0, result.output
    body = github.pulls[1]["body"]
    assert body.startswith("### hold(svc-a): production\n")
    assert "**Change risk: image** (nothing rendered changes). Reviewers: none required." in body
    assert "No rendered resource changes." in body
    assert "platform verify --env production: nothing to verify, no release changes." in body


def test_a_values_change_is_configuration_and_asks_its_reviewers(
    work: Fleet, github: FakeGitHub
) -> None:
    outcome = _open(work.root, _debug)
    assert outcome.pull_request is not None
    assert outcome.pull_request.risk == "configuration"
    assert outcome.pull_request.reviewers == ("@acme-lead",)
    body = github.pulls[1]["body"]
    assert "**Change risk: configuration**" in body
    assert "Reviewers: @acme-lead." in body
    assert "-  LOG_LEVEL: info\n+  LOG_LEVEL: debug\n" in body
    assert "changed: ConfigMap apps/svc-a (production/svc-a)" in _summaries(body)
    assert github.reviewers(1) == {"acme-lead"}


def test_a_network_policy_change_is_structure_and_asks_users_and_teams(
    work: Fleet, github: FakeGitHub
) -> None:
    def egress(text: str) -> str:
        return text.replace(
            "networkPolicy:\n",
            "networkPolicy:\n  egressTo: {cidrs: [{cidr: 10.40.0.0/16, ports: [5432]}]}\n",
        )

    outcome = _open(work.root, egress)
    assert outcome.pull_request is not None
    assert outcome.pull_request.risk == "structure"
    body = github.pulls[1]["body"]
    assert "Reviewers: @acme-corp/platform, @sre-oncall." in body
    assert "changed: NetworkPolicy apps/svc-a (production/svc-a)" in _summaries(body)
    assert "+        cidr: 10.40.0.0/16\n+    ports:\n+    - port: 5432\n" in body
    assert github.reviewers(1) == {"team:platform", "sre-oncall"}


def test_a_first_image_adds_a_network_policy_a_structure_change(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    _without_image(work, "svc-b")
    result = cli(work.root, "promote", "svc-b", "--to", "production", "--pull-request")
    assert result.exit_code == 0, result.output
    assert "change risk: structure, review requested from @acme-corp/platform" in result.stdout
    summaries = _summaries(github.pulls[1]["body"])
    assert "added: NetworkPolicy apps/svc-b (production/svc-b)" in summaries
    assert all(s.startswith("added: ") for s in summaries), summaries
    assert github.reviewers(1) == {"team:platform", "sre-oncall"}


def test_the_policy_delta_names_the_findings_added_and_removed(work: Fleet) -> None:
    def without_pdb(text: str) -> str:
        return text.replace(
            "podDisruptionBudget:\n  enabled: true", "podDisruptionBudget:\n  enabled: false"
        )

    added = _reviewed(work.root, without_pdb)
    assert added.risk == "structure"
    assert [(r.change, r.kind) for r in added.resources if not r.image_only] == [
        ("deleted", "PodDisruptionBudget")
    ]
    found = [(f.target, f.check, f.resource) for f in added.policy.added]
    assert found == [("production/svc-a", "PLAT003", "Rollout/svc-a")], added.policy
    assert added.policy.removed == ()
    assert [(f.check, f.resource) for f in added.policy.failing] == [("PLAT003", "Rollout/svc-a")]
    body = added.markdown()
    assert "1 violation(s) after this change" in body
    assert "Findings added:" in body
    assert "| production/svc-a | PLAT003 | Rollout/svc-a |" in body

    # the same edit by hand on the branch; a promotion that restores it removes the finding
    path = work.root / PRODUCTION
    path.write_text(without_pdb(path.read_text()))
    git(work.root, "commit", "-qam", "no PDB")
    restored = _reviewed(
        work.root,
        lambda t: t.replace(
            "podDisruptionBudget:\n  enabled: false", "podDisruptionBudget:\n  enabled: true"
        ),
    )
    assert [(f.check, f.resource) for f in restored.policy.removed] == [
        ("PLAT003", "Rollout/svc-a")
    ]
    assert restored.policy.added == ()
    assert [(r.change, r.kind) for r in restored.resources if not r.image_only] == [
        ("added", "PodDisruptionBudget")
    ]
    assert restored.risk == "structure"
    assert "Findings removed:" in restored.markdown()


def test_reviewers_github_refuses_leave_the_pull_request_open_and_say_so(
    work: Fleet, cli: Cli, github: FakeGitHub
) -> None:
    _without_image(work, "svc-b")
    github.collaborators = {"someone-else"}
    result = cli(work.root, "promote", "svc-b", "--to", "production", "--pull-request")
    assert result.exit_code == 3, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pull request #1 is open" in lines[0]
    assert "@acme-corp/platform, @sre-oncall (structure change) failed" in lines[0]
    assert github.pulls[1]["state"] == "open"


@pytest.mark.parametrize(
    ("review_text", "complaint"),
    [
        ("{big: ['@acme-lead']}", "big"),
        ("{structure: ['acme-lead']}", "@login"),
        ("{structure: []}", "structure"),
        ("{structure: ['@a', '@a']}", "structure"),
        ("{structure: '@acme-lead'}", "structure"),
        ("[configuration]", "review"),
    ],
)
def test_a_bad_review_declaration_is_one_line_exit_2_and_changes_nothing(
    work: Fleet, cli: Cli, review_text: str, complaint: str
) -> None:
    def bad(pipeline: Any) -> None:
        pipeline["stages"][-1]["review"] = yaml.safe_load(review_text)

    edit_yaml(work.root / "environments/pipeline.yaml", bad, sequence_indent=4)
    git(work.root, "commit", "-qam", "bad review")
    before = _state(work.root)
    result = cli(work.root, "promote", "svc-a", "--to", "production", "--dry-run", "-o", "markdown")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pipeline.yaml:" in lines[0], lines[0]
    assert complaint in lines[0], lines[0]
    assert _state(work.root) == before
