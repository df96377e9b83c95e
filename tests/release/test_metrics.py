"""``platform metrics`` against a history the test writes with known commit times.

Promotions and rollbacks are made by the real commands (their trailers are what is read); a
publish and one promotion of a tag the first stage ran without a digest are written with the
trailers the tool writes (both need a registry to run for real). A pull request's commit is
made six hours before its merge: its time is the merge's. Every expected value below is
computed by hand from the hours of the timeline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platformctl import dora
from platformctl.cli import app
from platformctl.dora import Report, deployments, metrics, parse_since
from platformctl.errors import InputError
from platformctl.git import Git, GitError
from platformctl.ledger import history
from platformctl.model import load_repo
from tests.cli.test_bad_input import state
from tests.conftest import edit_yaml, git
from tests.release.fleet import Fleet, digest, image, make_fleet

HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Timeline:
    fleet: Fleet
    base: dt.datetime  # hour 0 of the timeline

    def at(self, hours: float) -> dt.datetime:
        return self.base + hours * HOUR


@contextmanager
def dated(when: dt.datetime) -> Iterator[None]:
    """Commits made inside (by git or by the tool in-process) carry this time."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    saved = {key: os.environ.get(key) for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")}
    os.environ.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _commit(fleet: Fleet, message: str) -> None:
    subprocess.run(
        ["git", "-C", str(fleet.root), "commit", "-qa", "-F", "-"],
        input=message,
        text=True,
        check=True,
    )


def _trailers(action: str, stage: str, service: str, build: int, *extra: str) -> str:
    """The trailer block ``platform publish``/``promote`` writes (release.py ``message``)."""
    lines = [
        f"Platform-Action: {action}",
        f"Platform-Environment: {stage}",
        f"Platform-Service: {service}",
        f"Platform-Image: {image(service, build).repository}:1.{build}.0@{digest(build)}",
        *extra,
        "Platform-Actor: CI",
    ]
    return "\n".join(lines) + "\n"


def _platform(fleet: Fleet, *args: str) -> None:
    result = CliRunner().invoke(app, ["--repo", str(fleet.root), *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)


def _build_timeline(root: Path, base: dt.datetime) -> Timeline:
    """Hours from ``base``; d, s, p are the three stages (whatever this template names them).

    initial (-48)  alpha and beta build 1 everywhere
    alpha:  0 publish 2 → d    10 promote 2 → s    24 PR commit / 30 merge: promote 2 → p
           40 CI writes 3 (tag only) → d    50 promote 3 → s (digest resolved)
           60 promote 3 → p    62 rollback p (to 2)    70 hand edit p: build 4
    beta:   5 publish 2 → d    20 promote 2 → s    26 hand edit of replicas in d (no image)
           80 promote 2 → p    90 hand edit of replicas in p    100 rollback s (to 1)
    """
    fleet = make_fleet(root, ["alpha", "beta"])
    d, s, p = fleet.stages
    timeline = Timeline(fleet, base)
    with dated(timeline.at(-48)):
        git(fleet.root, "commit", "-q", "--amend", "--no-edit", "--reset-author")

    def publish(hours: float, service: str, build: int) -> None:
        fleet.set_image(d, service, build, commit=False)
        with dated(timeline.at(hours)):
            source = f"Platform-Source-Commit: {build:040x}"
            _commit(
                fleet,
                f"publish({service}): {d} 1.{build}.0\n\n"
                + _trailers("publish", d, service, build, source),
            )

    def promote(hours: float, service: str, stage: str) -> None:
        with dated(timeline.at(hours)):
            _platform(fleet, "promote", service, "--to", stage)

    def rollback(hours: float, service: str, stage: str) -> None:
        with dated(timeline.at(hours)):
            _platform(fleet, "rollback", service, "--env", stage, "--reason", "errors")

    def replicas(hours: float, service: str, stage: str) -> None:
        edit_yaml(fleet.values(stage, service), lambda data: data.update(replicaCount=3))
        with dated(timeline.at(hours)):
            _commit(fleet, f"{service}: three replicas in {stage}\n")

    publish(0, "alpha", 2)
    publish(5, "beta", 2)
    promote(10, "alpha", s)
    promote(20, "beta", s)
    git(fleet.root, "switch", "-q", "-c", "promotion")
    promote(24, "alpha", p)
    git(fleet.root, "switch", "-q", "main")
    replicas(26, "beta", d)
    with dated(timeline.at(30)):
        git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", "promotion")
    fleet.set_image(d, "alpha", 3, commit=False, pinned=False)
    with dated(timeline.at(40)):
        _commit(fleet, "ci: alpha 1.3.0\n")
    fleet.set_image(s, "alpha", 3, commit=False)  # the registry gate resolved the tag
    with dated(timeline.at(50)):
        from_d = f"Platform-From: {d}"
        _commit(
            fleet,
            f"promote(alpha): {d} → {s} 1.3.0\n\n" + _trailers("promote", s, "alpha", 3, from_d),
        )
    promote(60, "alpha", p)
    rollback(62, "alpha", p)
    fleet.set_image(p, "alpha", 4, commit=False)
    with dated(timeline.at(70)):
        _commit(fleet, "hotfix alpha by hand\n")
    promote(80, "beta", p)
    replicas(90, "beta", p)
    rollback(100, "beta", s)
    return timeline


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Timeline:
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=20)
    return _build_timeline(tmp_path_factory.mktemp("metrics") / "fleet", base)


def _report(timeline: Timeline, since: float, until: float = 120) -> Report:
    root = timeline.fleet.root
    repo = load_repo(root)
    return metrics(Git(root), repo, timeline.at(since), timeline.at(until))


def _hours(values: object) -> list[float]:
    assert isinstance(values, tuple)
    return sorted(value / HOUR for value in values)


def test_the_four_numbers_of_each_stage_by_hand(timeline: Timeline) -> None:
    d, s, p = (m.as_dict() for m in _report(timeline, 0).environments)
    per_day = {name: m["per_day"] for name, m in zip("dsp", (d, s, p), strict=True)}
    # 120 hours = 5 days
    assert per_day == {"d": 3 / 5, "s": 4 / 5, "p": 5 / 5}
    assert (d["deployments"], d["by_action"]) == (3, {"manual": 1, "publish": 2})
    assert (s["deployments"], s["by_action"]) == (4, {"promote": 3, "rollback": 1})
    assert (p["deployments"], p["by_action"]) == (5, {"manual": 1, "promote": 3, "rollback": 1})
    # lead time: a new release's first-stage arrival to its arrival here
    assert d["lead_time"] == {
        "releases": 3,
        "median_seconds": 0.0,
        "p90_seconds": 0.0,
        "without_first_stage": 0,
    }
    # alpha 2: 0 → 10, beta 2: 5 → 20, alpha 3: 40 → 50 (matched by tag: d ran it unpinned);
    # beta's rollback to build 1 is no new release
    assert s["lead_time"] == {
        "releases": 3,
        "median_seconds": 10 * 3600.0,
        "p90_seconds": 15 * 3600.0,
        "without_first_stage": 0,
    }
    # alpha 2: 0 → 30 (the merge, not the pull request's commit at 24), alpha 3: 40 → 60,
    # beta 2: 5 → 80; the hand-made build 4 never was in the first stage
    assert p["lead_time"] == {
        "releases": 3,
        "median_seconds": 30 * 3600.0,
        "p90_seconds": 75 * 3600.0,
        "without_first_stage": 1,
    }
    # change failure: beta's promotion at 20 into s, alpha's at 60 into p were rolled back
    assert d["change_failure_rate"] == {"promotions": 0, "rolled_back": 0, "rate": None}
    assert s["change_failure_rate"] == {"promotions": 3, "rolled_back": 1, "rate": 1 / 3}
    assert p["change_failure_rate"] == {"promotions": 3, "rolled_back": 1, "rate": 1 / 3}
    # time to restore: beta 2 arrived in s at 20, rolled back at 100; alpha 3 in p 60 → 62
    assert d["time_to_restore"] == {"rollbacks": 0, "median_seconds": None}
    assert s["time_to_restore"] == {"rollbacks": 1, "median_seconds": 80 * 3600.0}
    assert p["time_to_restore"] == {"rollbacks": 1, "median_seconds": 2 * 3600.0}


def test_a_later_window_still_finds_origins_before_it(timeline: Timeline) -> None:
    """From hour 45: d has nothing; s has alpha 3 (its origin at 40 is outside) and beta's
    rollback; p has alpha 3, the rollback, the hand edit and beta 2 (origin at 5)."""
    d, s, p = _report(timeline, 45).environments
    assert (d.deployments, d.per_day, d.lead_times) == (0, 0.0, ())
    assert (s.deployments, _hours(s.lead_times), s.promotions, s.rolled_back) == (2, [10], 1, 0)
    assert _hours(s.restore_times) == [80]
    assert (p.deployments, _hours(p.lead_times), p.without_origin) == (4, [20, 75], 1)
    assert (p.promotions, p.rolled_back, _hours(p.restore_times)) == (2, 1, [2])
    assert p.per_day == 4 / (75 / 24)


def test_deployments_are_the_ledgers_releases(timeline: Timeline) -> None:
    """The one-pass walk finds exactly what ``history`` reads file by file: same commits,
    actions, images (the initial commit is every file's first release)."""
    root = timeline.fleet.root
    repo = load_repo(root)
    found = deployments(Git(root), repo, repo.services)
    for release in repo.releases.values():
        ours = [
            (d.commit, d.action, d.image, d.time.isoformat())
            for d in found
            if (d.environment, d.service) == (release.environment.name, release.service)
        ]
        ledger = [(e.commit, e.action, e.image, e.time) for e in history(Git(root), release)]
        assert ours == ledger[::-1], release.key
    merge = git(root, "log", "--merges", "-1", "--format=%H").strip()
    (merged,) = [d for d in found if d.commit == merge]
    assert (merged.action, merged.time) == ("promote", timeline.at(30))


def test_json_and_markdown_from_the_command(timeline: Timeline) -> None:
    root = timeline.fleet.root
    _, s, _ = timeline.fleet.stages
    since = timeline.at(0).isoformat()
    runner = CliRunner()
    result = runner.invoke(
        app, ["--repo", str(root), "metrics", "--env", s, "--since", since, "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert dt.datetime.fromisoformat(report["since"]) == timeline.at(0)
    assert report["services"] == ["alpha", "beta"]
    (staging,) = report["environments"]
    assert staging["environment"] == s
    assert staging["per_day"] == pytest.approx(4 / report["days"])
    assert staging["lead_time"]["p90_seconds"] == 15 * 3600.0
    assert staging["change_failure_rate"]["rolled_back"] == 1
    one = runner.invoke(
        app,
        ["--repo", str(root), "metrics", "-e", s, "-s", "beta", "--since", since, "-o", "markdown"],
    )
    assert one.exit_code == 0, one.output
    lines = one.stdout.splitlines()
    assert lines[0] == (
        "| environment | deployments | per day | lead time | lead time p90 | change failure "
        "| time to restore |"
    )
    # beta alone in s: its promotion (lead 15h) and its rollback 80h later
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[:2] == [s, "2"]
    assert cells[3:] == ["15h", "15h", "1/1 (100%)", "3d8h"]


def test_a_window_without_deployments_says_so(timeline: Timeline) -> None:
    since = timeline.at(110).isoformat()
    result = CliRunner().invoke(
        app, ["--repo", str(timeline.fleet.root), "metrics", "--since", since]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(
        f"no deployments since {timeline.at(110):%Y-%m-%d %H:%M} UTC"
    )


def test_since_reads_durations_and_dates() -> None:
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    assert parse_since("30d", now) == now - dt.timedelta(days=30)
    assert parse_since("1d12h", now) == now - dt.timedelta(hours=36)
    assert parse_since("2026-11-01", now) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert parse_since("2026-11-30T09:00+01:00", now) == dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC)
    for bad in ("yesterday", "30x", "30", "-30d", "0d", "2999-01-01", "", "999999d"):
        with pytest.raises(InputError):
            parse_since(bad, now)


BAD = [
    (("--since", "yesterday"), "is neither a duration nor a date"),
    (("--since", "0d"), "empty window"),
    (("--since", "999999d"), "before year 1"),
    (("--since", "99999999999d"), "before year 1"),
    (("--since", "2999-01-01"), "empty window"),
    (("--env", "qa"), "unknown environment 'qa'"),
    (("--service", "gamma"), "unknown service 'gamma'"),
    (("--service", "../alpha"), "service"),
    (("-o", "yaml"), "yaml"),
]


@pytest.mark.parametrize(("args", "said"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    timeline: Timeline, args: tuple[str, ...], said: str
) -> None:
    root = timeline.fleet.root
    before = state(root)
    result = CliRunner().invoke(app, ["--repo", str(root), "metrics", *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert said in line
    assert state(root) == before


def test_layouts_the_tool_does_not_write_are_read_whole(tmp_path: Path) -> None:
    """A block-map image, a comment after the line, a tag YAML reads as a number: each
    version is what the ledger reads (the patch alone cannot tell)."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    stage = fleet.stages[0]
    path = fleet.values(stage, "alpha")
    one_line = next(line for line in path.read_text().splitlines() if line.startswith("image:"))
    repository = image("alpha", 1).repository

    current = one_line + "\n"

    def write(lines: str, message: str) -> None:
        nonlocal current
        path.write_text(path.read_text().replace(current, lines))
        current = lines
        git(fleet.root, "commit", "-qam", message)

    block = f"image:\n  repository: {repository}\n  tag: 1.2.0\n"
    write(block, "block map")
    write(block.replace("1.2.0", "1.3.0"), "block map, a new tag")
    write(block.replace("1.2.0", "1.3.0") + "  # pinned by hand\n", "a comment only")
    write(f"image: {{repository: {repository}, tag: 1.4.0}}  # hotfix\n", "one line, commented")
    write(f"image: {{repository: {repository}, tag: 1.5}}  # a number\n", "tag read as 1.5")
    write(f"image: {{repository: {repository}, tag: 1.4.0}}\n", "the same image again")
    write(f"image: {{repository: {repository}, tag: 1.7}}\n", "tag read as 1.7, one line")
    write(f'image: {{repository: {repository}, tag: "1.6"}}\n', "a quoted tag")
    repo = load_repo(fleet.root)
    found = deployments(Git(fleet.root), repo, ["alpha"])
    tags = [d.image.tag for d in found if d.environment == stage]
    assert tags == ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.6"]
    ledger = history(Git(fleet.root), repo.release("alpha", stage))
    assert [d.commit for d in found if d.environment == stage] == [e.commit for e in ledger][::-1]


def test_one_promotion_of_several_services_is_one_deployment(tmp_path: Path) -> None:
    """``promote --all`` of two services is one commit: one deployment (per day one), two
    releases (each with its lead time and its own chance of a rollback)."""
    since = dt.datetime.now(dt.UTC) - HOUR
    with dated(since - HOUR):
        fleet = make_fleet(tmp_path / "fleet", ["alpha", "beta"])
    d, s = fleet.stages[0], fleet.stages[1]
    fleet.set_image(d, "alpha", 2)
    fleet.set_image(d, "beta", 2)
    _platform(fleet, "promote", "--all", "--to", s)
    until = dt.datetime.now(dt.UTC) + HOUR
    (both,) = metrics(Git(fleet.root), load_repo(fleet.root), since, until, [s]).environments
    assert (both.deployments, dict(both.by_action), both.promotions) == (1, {"promote": 1}, 2)
    assert len(both.lead_times) == 2
    (one,) = metrics(
        Git(fleet.root), load_repo(fleet.root), since, until, [s], ["beta"]
    ).environments
    assert (one.deployments, one.promotions) == (1, 1)
    (first,) = metrics(Git(fleet.root), load_repo(fleet.root), since, until, [d]).environments
    assert first.deployments == 2  # two commits, one image each


def _same_as_the_ledger(root: Path) -> list[tuple[str, str, str]]:
    """Every deployment the walk finds, after checking each release's are ``history``'s."""
    repo = load_repo(root)
    found = deployments(Git(root), repo, repo.services)
    for release in repo.releases.values():
        ours = [
            d.commit
            for d in found
            if (d.environment, d.service) == (release.environment.name, release.service)
        ]
        assert ours == [e.commit for e in history(Git(root), release)][::-1], release.key
    return [(d.environment, d.service, d.action) for d in found]


@pytest.mark.parametrize("read_every", [1, 1000])
def test_commits_outside_the_values_files_and_a_deleted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_every: int
) -> None:
    """The walk lists every commit of the branch (no pathspec): a commit that changed only a
    chart, one that changed a chart and a values file, a values file deleted then restored
    (not a release), and a merge bringing its branch's change are read as the ledger does,
    whether the versions' contents are read during the walk or after it."""
    monkeypatch.setattr(dora, "_READ_EVERY", read_every)
    fleet = make_fleet(tmp_path / "fleet", ["alpha", "beta"])
    d, s, _ = fleet.stages
    (fleet.root / "charts" / "NOTES.md").write_text("a chart change\n")
    git(fleet.root, "add", "charts/NOTES.md")
    git(fleet.root, "commit", "-qm", "charts only")
    (fleet.root / "charts" / "NOTES.md").write_text("a chart change and a release\n")
    fleet.set_image(d, "alpha", 2, commit=False)
    git(fleet.root, "commit", "-qam", "a chart and alpha build 2")
    beta = fleet.values(s, "beta").read_text()
    git(fleet.root, "rm", "-q", str(fleet.values(s, "beta")))
    git(fleet.root, "commit", "-qm", "beta leaves the second stage")
    fleet.values(s, "beta").write_text(beta)
    git(fleet.root, "add", str(fleet.values(s, "beta")))
    git(fleet.root, "commit", "-qm", "beta is back, as it was")
    git(fleet.root, "switch", "-q", "-c", "feature")
    fleet.set_image(d, "beta", 3)
    git(fleet.root, "switch", "-q", "main")
    fleet.set_image(s, "alpha", 2)
    git(fleet.root, "merge", "-q", "--no-ff", "-m", "Merge pull request #8", "feature")
    found = _same_as_the_ledger(fleet.root)
    initial = {
        (stage, service, "manual") for stage in fleet.stages for service in ("alpha", "beta")
    }
    assert set(found[:6]) == initial
    assert found[6:] == [(d, "alpha", "manual"), (s, "alpha", "manual"), (d, "beta", "manual")]


def _ask_all(root: Path, names: list[str], *, look: bool = False) -> list[bytes | None]:
    """Every answer: all asked at once, or one at a time with a look at what is ready after
    each question if ``look``."""
    found: list[bytes | None] = []
    with Git(root).object_batch() as batch:
        if not look:
            batch.ask(*names)
        for name in names if look else ():
            batch.ask(name)
            found += batch.ready()
        return found + list(batch.answers())


def test_object_batch_answers_in_asking_order(tmp_path: Path) -> None:
    """Blob ids and ``revision:path`` names, a missing one among them, come back in order,
    each once, whether taken as git answers or at the end; a git that cannot answer is a
    GitError, not a short list."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    path = f"environments/{fleet.stages[0]}/alpha.yaml"
    blob = git(fleet.root, "rev-parse", f"HEAD:{path}").strip()
    text = fleet.values(fleet.stages[0], "alpha").read_bytes()
    names = [blob, "HEAD:no-such-file", f"HEAD:{path}", "0" * 40]
    assert _ask_all(fleet.root, names) == [text, None, text, None]
    tree = git(fleet.root, "ls-tree", "-r", "HEAD").splitlines()
    blobs = [line.split()[2] for line in tree]
    contents = [
        subprocess.run(
            ["git", "-C", str(fleet.root), "cat-file", "blob", b], capture_output=True, check=True
        ).stdout
        for b in blobs
    ]
    assert _ask_all(fleet.root, blobs * 3, look=True) == contents * 3
    with pytest.raises(GitError, match="cat-file"):
        _ask_all(tmp_path, [blob])  # not a repository


@pytest.mark.parametrize(
    "text",
    [
        "",
        "image:",
        "replicaCount: 1\nimage: {repository: r, tag: t}\n",
        "image: {repository: r, tag: t}\r\nnote: see image: b\r\n",
        "sidecar:\n  image: {repository: s, tag: t}\nimage: {repository: r, tag: t}",
        "image: a\nimage: b\n",
        "noimage: 1\nmy-image: 2\nimage:image: 3\n",
        "\ufeffimage: {repository: r, tag: t}\n",
        "\n\nimage: {}\n\n",
    ],
)
def test_top_image_lines_are_what_the_multiline_regex_finds(text: str) -> None:
    assert dora._top_image_lines(text) == re.findall(r"^image:.*$", text, re.MULTILINE)


def test_image_written_among_other_image_keys(tmp_path: Path) -> None:
    """A sidecar's indented image, a value that mentions ``image:``, Windows line ends and a
    file without a last newline: each version's image is the one the ledger reads."""
    fleet = make_fleet(tmp_path / "fleet", ["alpha"])
    stage = fleet.stages[0]
    path = fleet.values(stage, "alpha")
    original = path.read_text()
    one_line = next(line for line in original.splitlines() if line.startswith("image:"))
    versions = [
        original + "sidecar:\n  image: {repository: registry.example/proxy, tag: 9.9.9}\n",
        original.replace(one_line, one_line.replace("1.1.0", "1.2.0"))
        + 'note: "the image: line above is the one"\n',
        original.replace(one_line, one_line.replace("1.1.0", "1.3.0")).replace("\n", "\r\n"),
        original.replace(one_line, one_line.replace("1.1.0", "1.4.0")).rstrip("\n"),
    ]
    for number, text in enumerate(versions):
        path.write_bytes(text.encode())
        git(fleet.root, "commit", "-qam", f"version {number}")
    found = _same_as_the_ledger(fleet.root)
    assert [f for f in found if f[0] == stage] == [(stage, "alpha", "manual")] * 4
