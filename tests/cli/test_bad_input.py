"""The bad-input battery: each case is one line on stderr, its documented exit code, and a
clone whose tree, index, refs and stash are byte for byte what they were."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platformctl import delivery, release
from platformctl.cli import app
from platformctl.imagefile import with_image
from platformctl.model import Image
from tests.conftest import git
from tests.release.fleet import Fleet, make_fleet

Setup = Callable[[Fleet], None]


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # {s}: a service; {t0} {t1} {t2}: the stages; {x}: not a repository
    code: int
    setup: Setup | None = None


def _commit(fleet: Fleet, relative: str, data: bytes, message: str = "hand edit") -> None:
    path = fleet.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    git(fleet.root, "add", "-A")
    git(fleet.root, "commit", "-qm", message)


def values(stage: int, data: bytes) -> Setup:
    return lambda f: _commit(f, f"environments/{f.stages[stage]}/alpha.yaml", data)


def append_values(stage: int, data: bytes) -> Setup:
    def setup(fleet: Fleet) -> None:
        path = fleet.values(fleet.stages[stage], "alpha")
        _commit(fleet, str(path.relative_to(fleet.root)), path.read_bytes() + data)

    return setup


def settings(stage: int, extra: bytes) -> Setup:
    def setup(fleet: Fleet) -> None:
        path = fleet.root / "environments" / fleet.stages[stage] / "environment.yaml"
        _commit(fleet, str(path.relative_to(fleet.root)), path.read_bytes() + extra)

    return setup


def pipeline(extra: bytes) -> Setup:
    def setup(fleet: Fleet) -> None:
        path = fleet.root / "environments/pipeline.yaml"
        _commit(fleet, "environments/pipeline.yaml", path.read_bytes() + extra)

    return setup


def newer_source(fleet: Fleet) -> None:
    fleet.set_image(fleet.stages[0], "alpha", 2)
    fleet.set_image(fleet.stages[1], "alpha", 2)


def symlink_out(relative: Callable[[Fleet], str]) -> Setup:
    def setup(fleet: Fleet) -> None:
        newer_source(fleet)
        path = fleet.root / relative(fleet)
        outside = fleet.root.parent / f"outside-{path.name}"
        shutil.copy(path, outside)
        path.unlink()
        path.symlink_to(outside)
        git(fleet.root, "add", "-A")
        git(fleet.root, "commit", "-qm", "a link out")

    return setup


def dirty(fleet: Fleet) -> None:
    newer_source(fleet)
    path = fleet.values(fleet.stages[2], "beta")
    path.write_text(path.read_text() + "# local note\n")


def untracked(fleet: Fleet) -> None:
    newer_source(fleet)
    (fleet.root / "notes.txt").write_text("wip\n")


def staged(fleet: Fleet) -> None:
    dirty(fleet)
    git(fleet.root, "add", "-A")


def detached(fleet: Fleet) -> None:
    newer_source(fleet)
    git(fleet.root, "checkout", "-q", "--detach")


def marker(name: str, directory: bool = False) -> Setup:
    def setup(fleet: Fleet) -> None:
        newer_source(fleet)
        path = fleet.root / ".git" / name
        if directory:
            path.mkdir()
        else:
            path.write_text(git(fleet.root, "rev-parse", "HEAD"))

    return setup


def with_remote(fleet: Fleet) -> None:
    newer_source(fleet)
    git(fleet.root, "remote", "add", "origin", "https://user:s3cret@github.com/acme/platform.git")


def released(fleet: Fleet) -> None:
    """A second release in the last stage (one to roll back), and a GitHub remote."""
    fleet.set_image(fleet.stages[-1], "alpha", 2)
    git(fleet.root, "remote", "add", "origin", "https://github.com/acme/platform.git")


def held(fleet: Fleet) -> None:
    newer_source(fleet)
    settings(
        2, b"holds:\n  alpha: {reason: incident, by: ops, since: '2026-01-01T00:00:00+00:00'}\n"
    )(fleet)


def stray_folder(fleet: Fleet) -> None:
    _commit(fleet, "environments/qa/alpha.yaml", b"image: {repository: x, tag: '1'}\n")


def yml_file(fleet: Fleet) -> None:
    _commit(fleet, f"environments/{fleet.stages[1]}/gamma.yml", b"a: 1\n")


def base_image(fleet: Fleet) -> None:
    path = fleet.root / "environments/base/alpha.yaml"
    _commit(fleet, "environments/base/alpha.yaml", path.read_bytes() + b"image: {tag: x}\n")


def no_settings(fleet: Fleet) -> None:
    (fleet.root / "environments" / fleet.stages[1] / "environment.yaml").unlink()
    git(fleet.root, "commit", "-qam", "gone")


BOMB = b"".join(
    [b"bomb0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"]
    + [f"bomb{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n".encode() for n in range(1, 9)]
)
DUPLICATE_IMAGE = b"image: {repository: registry.example/a, tag: '1'}\n"
NOT_UTF8 = b"# caf\xe9\nimage: {repository: x, tag: '1'}\n"
LONG_LINE = b"env: [" + b"x" * 3_000_000 + b"\n"
PROMOTE = ("promote", "alpha", "--to", "{t1}")
PROMOTE_LAST = ("promote", "alpha", "--to", "{t2}")
ROLLBACK = ("rollback", "alpha", "--env", "{t2}")
HOLD = ("hold", "alpha", "--env", "{t2}", "--reason")
PUBLISH = ("publish", "alpha", "--tag", "1.2.0")


def unreachable(fleet: Fleet) -> None:
    """The first stage's image in a registry nothing answers for (the discard port)."""
    path = fleet.values(fleet.stages[0], "alpha")
    edited = with_image(path.read_text(), Image("127.0.0.1:9/team/alpha", "1.1.0"))
    assert edited is not None
    _commit(fleet, str(path.relative_to(fleet.root)), edited.encode())


def discover_policy(policy: bytes) -> Setup:
    return pipeline(b"discover:\n  alpha: " + policy + b"\n")


def unreachable_discovered(fleet: Fleet) -> None:
    unreachable(fleet)
    discover_policy(b"{semver: '^1'}")(fleet)


CASES = [
    # usage errors, as click reports them
    Case("promote without --to", ("promote", "alpha"), 2),
    Case("promote --to without a value", ("promote", "alpha", "--to"), 2),
    Case("rollback without --env", ("rollback", "alpha"), 2),
    Case("hold without --reason", ("hold", "alpha", "--env", "{t2}"), 2),
    Case("unknown command", ("deploy", "alpha"), 2),
    Case("unknown option", (*PROMOTE, "--bogus"), 2),
    Case("history --limit 0", ("history", "alpha", "--env", "{t1}", "--limit", "0"), 2),
    Case("history --limit x", ("history", "alpha", "--env", "{t1}", "--limit", "x"), 2),
    Case("unknown output format", (*PROMOTE, "--output", "yaml"), 2),
    Case("negative wait timeout", (*PROMOTE, "--wait-timeout", "-1"), 2),
    Case("zero wait interval", (*PROMOTE, "--wait-interval", "0"), 2),
    Case("status --env without a value", ("status", "--env"), 2),
    Case("render without a service", ("render", "--env", "{t0}"), 2),
    Case(
        "ci comment on PR 0",
        ("ci", "comment", "--pull-request", "0", "--marker", "m", "--file", "f"),
        2,
    ),
    Case("unhold without --env", ("unhold", "alpha"), 2),
    Case("diff without --to", ("diff", "--from", "{t0}"), 2),
    # names
    Case("unknown service", ("promote", "gamma", "--to", "{t1}"), 2),
    Case("service with a path", ("promote", "../alpha", "--to", "{t1}"), 2),
    Case("service in upper case", ("promote", "Alpha", "--to", "{t1}"), 2),
    Case("service of 60 characters", ("promote", "a" * 60, "--to", "{t1}"), 2),
    Case("service with a space", ("promote", "al pha", "--to", "{t1}"), 2),
    Case("service with a newline", ("promote", "al\npha", "--to", "{t1}"), 2),
    Case("service looking like a flag value", ("promote", "-", "--to", "{t1}"), 2),
    Case("unknown target", ("promote", "alpha", "--to", "qa"), 2),
    Case("reserved name as target", ("promote", "alpha", "--to", "base"), 2),
    Case("unknown --from", ("promote", "alpha", "--from", "qa", "--to", "{t1}"), 2),
    Case("rollback unknown service", ("rollback", "gamma", "--env", "{t2}"), 2),
    Case("rollback unknown env", ("rollback", "alpha", "--env", "qa"), 2),
    Case("hold unknown service", ("hold", "gamma", "--env", "{t2}", "--reason", "x"), 2),
    Case("hold unknown env", ("hold", "alpha", "--env", "qa", "--reason", "x"), 2),
    Case("unhold unknown service", ("unhold", "gamma", "--env", "{t2}"), 2),
    Case("history unknown service", ("history", "gamma", "--env", "{t1}"), 2),
    Case("history unknown env", ("history", "alpha", "--env", "qa"), 2),
    Case("render unknown service", ("render", "gamma", "--env", "{t0}"), 2),
    Case("render unknown env", ("render", "alpha", "--env", "qa"), 2),
    Case("diff unknown --from", ("diff", "--from", "qa", "--to", "{t1}"), 2),
    Case("diff unknown --to", ("diff", "--from", "{t0}", "--to", "qa"), 2),
    Case("status unknown env", ("status", "--env", "qa"), 2),
    Case("verify unknown service", ("verify", "--service", "gamma"), 2),
    Case("verify unknown env", ("verify", "--env", "qa"), 2),
    Case("not a repository", ("--repo", "{x}", "status"), 2),
    Case("repository path that does not exist", ("--repo", "{x}/nowhere", "status"), 2),
    # what a promotion may do
    Case("promote into the first stage", ("promote", "alpha", "--to", "{t0}"), 2),
    Case("--from is --to", ("promote", "alpha", "--from", "{t1}", "--to", "{t1}"), 2),
    Case("--force without --reason", (*PROMOTE_LAST, "--from", "{t0}", "--force"), 2),
    Case("services and --all", ("promote", "alpha", "--all", "--to", "{t1}"), 2),
    Case("neither services nor --all", ("promote", "--to", "{t1}"), 2),
    Case(
        "skipping a stage", ("promote", "alpha", "--from", "{t0}", "--to", "{t2}"), 1, newer_source
    ),
    Case("reversing the pipeline", ("promote", "alpha", "--from", "{t2}", "--to", "{t1}"), 1),
    Case("override of an undeclared gate", (*PROMOTE, "--override", "soak", "--reason", "x"), 2),
    Case("override of no such gate", (*PROMOTE, "--override", "luck", "--reason", "x"), 2),
    Case("--wait with --dry-run", (*PROMOTE, "--wait", "--dry-run"), 2),
    Case("--wait without --push", (*PROMOTE, "--wait"), 2),
    Case("--wait with --pull-request", (*PROMOTE, "--wait", "--pull-request"), 2),
    Case("--push with --pull-request", (*PROMOTE, "--push", "--pull-request"), 2),
    Case("--offline without --dry-run", (*PROMOTE, "--offline"), 2),
    Case("--push without a remote", (*PROMOTE_LAST, "--push"), 3, newer_source),
    Case("--pull-request without a remote", (*PROMOTE_LAST, "--pull-request"), 3, newer_source),
    Case("--pull-request without a token", (*PROMOTE_LAST, "--pull-request"), 3, with_remote),
    Case("rollback --push without a remote", (*ROLLBACK, "--to", "1.1.0", "--push"), 3),
    Case("hold --push without a remote", (*HOLD, "incident", "--push"), 3),
    Case("rollback --pull-request without a token", (*ROLLBACK, "--pull-request"), 3, released),
    Case("hold --pull-request without a token", (*HOLD, "x", "--pull-request"), 3, with_remote),
    Case("promotion of a held service", PROMOTE_LAST, 1, held),
    Case("rollback with no earlier release", ROLLBACK, 1),
    Case("rollback to a release that never was", (*ROLLBACK, "--to", "9.9.9"), 2),
    # text that goes into a commit
    Case("empty --force reason", (*PROMOTE_LAST, "--from", "{t0}", "--force", "--reason", ""), 2),
    Case("blank --force reason", (*PROMOTE_LAST, "--from", "{t0}", "--force", "--reason", "  "), 2),
    Case(
        "reason forging a trailer",
        (*PROMOTE_LAST, "--from", "{t0}", "--force", "--reason", "x\nPlatform-Action: rollback"),
        2,
    ),
    Case("reason with a carriage return", (*PROMOTE_LAST, "--force", "--reason", "a\rb"), 2),
    Case("reason with an escape", (*PROMOTE_LAST, "--force", "--reason", "a\x1b[2Jb"), 2),
    Case("reason with a line separator", (*PROMOTE_LAST, "--force", "--reason", "a\u2028b"), 2),
    Case("reason with a paragraph separator", (*PROMOTE_LAST, "--force", "--reason", "a\u2029"), 2),
    Case("reason with a vertical tab", (*PROMOTE_LAST, "--force", "--reason", "a\vb"), 2),
    Case("reason with a form feed", (*PROMOTE_LAST, "--force", "--reason", "a\fb"), 2),
    Case("reason with NEL", (*PROMOTE_LAST, "--force", "--reason", "a\x85b"), 2),
    Case("override reason blank", (*PROMOTE, "--override", "soak", "--reason", " "), 2),
    Case("rollback reason empty", (*ROLLBACK, "--reason", ""), 2),
    Case("rollback reason blank", (*ROLLBACK, "--reason", "\t "), 2),
    Case("rollback reason forging a gate", (*ROLLBACK, "--reason", "x\nPlatform-Gate: ok"), 2),
    Case("rollback --to empty", (*ROLLBACK, "--to", ""), 2),
    Case("rollback --to blank", (*ROLLBACK, "--to", "   "), 2),
    Case("rollback --to with a newline", (*ROLLBACK, "--to", "1.1.0\n"), 2),
    Case("hold reason empty", (*HOLD, ""), 2),
    Case("hold reason blank", (*HOLD, " \t "), 2),
    Case("hold reason forging a trailer", (*HOLD, "x\nPlatform-Action: unhold"), 2),
    Case("hold reason with a line separator", (*HOLD, "x\u2028y"), 2),
    # the state of the clone
    Case("modified tracked file", PROMOTE_LAST, 2, dirty),
    Case("untracked file", PROMOTE_LAST, 2, untracked),
    Case("staged change", PROMOTE_LAST, 2, staged),
    Case("detached HEAD", PROMOTE_LAST, 2, detached),
    Case("rebase in progress", PROMOTE_LAST, 2, marker("rebase-merge", directory=True)),
    Case("merge in progress", PROMOTE_LAST, 2, marker("MERGE_HEAD")),
    Case("cherry-pick in progress", PROMOTE_LAST, 2, marker("CHERRY_PICK_HEAD")),
    Case("stale index.lock", PROMOTE_LAST, 3, marker("index.lock")),
    Case("hold on a dirty tree", (*HOLD, "incident"), 2, dirty),
    Case("hold with a stale index.lock", (*HOLD, "incident"), 3, marker("index.lock")),
    Case("hold in a rebase", (*HOLD, "incident"), 2, marker("rebase-apply", directory=True)),
    Case(
        "values file linked out of the clone",
        PROMOTE_LAST,
        2,
        symlink_out(lambda f: f"environments/{f.stages[2]}/alpha.yaml"),
    ),
    Case(
        "hold through a settings file linked out",
        (*HOLD, "incident"),
        2,
        symlink_out(lambda f: f"environments/{f.stages[2]}/environment.yaml"),
    ),
    # files that do not load
    Case("values not UTF-8", PROMOTE, 2, values(1, NOT_UTF8)),
    Case("status over values not UTF-8", ("status",), 2, values(0, NOT_UTF8)),
    Case("duplicate image key", PROMOTE, 2, append_values(1, DUPLICATE_IMAGE)),
    Case(
        "duplicate key in status",
        ("status",),
        2,
        append_values(2, b"replicaCount: 3\nreplicaCount: 4\n"),
    ),
    Case("alias bomb in values", PROMOTE, 2, append_values(1, BOMB)),
    Case("alias bomb for verify", ("verify",), 2, append_values(0, BOMB)),
    Case("recursive alias", ("status",), 2, append_values(0, b"loop: &l [*l]\n")),
    Case("unclosed flow mapping", PROMOTE, 2, values(1, b"image: {repository: x\n")),
    Case("a megabyte line", ("status",), 2, values(0, LONG_LINE)),
    Case("top level is a list", PROMOTE, 2, values(1, b"- image\n")),
    Case("unknown values key", ("status",), 2, append_values(0, b"replica: 2\n")),
    Case("image missing", PROMOTE, 2, values(1, b"replicaCount: 2\n")),
    Case("digest not sha256", PROMOTE, 2, values(1, b"image: {repository: x, digest: 'md5:1'}\n")),
    Case("tag not a tag", PROMOTE, 2, values(1, b"image: {repository: x, tag: 'a b'}\n")),
    Case("render values not UTF-8", ("render", "alpha", "--env", "{t0}"), 2, values(0, NOT_UTF8)),
    Case("history over a bomb", ("history", "alpha", "--env", "{t1}"), 2, append_values(1, BOMB)),
    Case(
        "diff over a duplicate",
        ("diff", "--from", "{t0}", "--to", "{t1}"),
        2,
        append_values(1, b"replicaCount: 1\nreplicaCount: 1\n"),
    ),
    Case("pipeline duplicate key", ("status",), 2, pipeline(b"repository: {url: x}\n")),
    Case("pipeline not UTF-8", ("status",), 2, pipeline(b"# \xff\n")),
    Case("pipeline alias bomb", ("status",), 2, pipeline(BOMB)),
    Case("settings duplicate key", ROLLBACK, 2, settings(2, b"namespace: other\n")),
    Case("settings alias bomb", ROLLBACK, 2, settings(2, BOMB)),
    Case("settings not UTF-8", ROLLBACK, 2, settings(2, b"# \xfe\n")),
    Case("stray stage folder", ("status",), 2, stray_folder),
    Case(".yml instead of .yaml", ("status",), 2, yml_file),
    Case("image in the base file", ("status",), 2, base_image),
    Case("settings file missing", ("status",), 2, no_settings),
    # publish and discover (the cases that need a registry are in tests/release/test_publish.py)
    Case("publish unknown service", (*PUBLISH[:1], "gamma", *PUBLISH[2:]), 2),
    Case("publish without --tag", ("publish", "alpha"), 2),
    Case("publish into a later stage", (*PUBLISH, "--env", "{t1}"), 2),
    Case("publish a tag that is not a tag", ("publish", "alpha", "--tag", "a b"), 2),
    Case("publish a digest that is not sha256", (*PUBLISH, "--digest", "md5:1"), 2),
    Case("publish --reason with a newline", (*PUBLISH, "--force", "--reason", "x\ny"), 2),
    Case("publish --force without --reason", (*PUBLISH, "--force"), 2),
    Case(
        "publish --build-url forging a trailer",
        (*PUBLISH, "--build-url", "https://ci/1\nPlatform-Action: rollback"),
        2,
    ),
    Case("publish --build-url not http", (*PUBLISH, "--build-url", "file:///etc/passwd"), 2),
    Case("publish --source-commit not a commit", (*PUBLISH, "--source-commit", "main"), 2),
    Case("publish --source-commit with a newline", (*PUBLISH, "--source-commit", "abc1234\n"), 2),
    Case("publish --push with --pull-request", (*PUBLISH, "--push", "--pull-request"), 2),
    Case("publish from an unreachable registry", PUBLISH, 3, unreachable),
    Case("discover unknown service", ("discover", "-s", "gamma"), 2),
    Case("discover --push with --pull-request", ("discover", "--push", "--pull-request"), 2),
    Case(
        "discover policy that is not a regex", ("discover",), 2, discover_policy(b"{pattern: '('}")
    ),
    Case(
        "discover policy of two kinds",
        ("discover",),
        2,
        discover_policy(b"{semver: '1', pattern: x}"),
    ),
    Case("discover range that is not one", ("discover",), 2, discover_policy(b"{semver: '>=x'}")),
    Case("discover from an unreachable registry", ("discover",), 3, unreachable_discovered),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The fleet each case copies (``_copy``); at the end, proof that no case wrote through a
    hard link into the files the copies share with it."""
    fleet = make_fleet(tmp_path_factory.mktemp("battery") / "fleet", ["alpha", "beta"])
    before = _shared_files(fleet.root)
    yield fleet
    assert _shared_files(fleet.root) == before, "a case wrote into a file the copies share"


def _shared_files(root: Path) -> str:
    digest = hashlib.sha256()
    for folder in _SHARED:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


# What no command and no case writes in place (git never rewrites an object): hard links.
_SHARED = ("charts", ".git/objects")


def _copy(template: Path, root: Path) -> None:
    """``template`` copied to ``root``, but for ``_SHARED``: hard links, which saves copying
    22 MB per case. The cases edit values files and git's own files where they are, so those
    are copies; a case that changes a chart must replace its file, not write into it."""
    shared = [template / folder for folder in _SHARED]

    def copy(source: str, target: str) -> None:
        if any(Path(source).is_relative_to(folder) for folder in shared):
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    shutil.copytree(template, root, symlinks=True, copy_function=copy)


def state(root: Path, *, linked: bool = False) -> dict[str, str]:
    """Tree (every file's bytes and mode, links' targets; not the git-ignored cache), index,
    refs and stash. With ``linked`` (one clone before and after a command), the files it
    shares with the battery's template by hard link (22 MB) by inode and stat: a write in
    place moves the mtime, a replacement the inode, and the template's own guard compares
    their bytes at the end."""
    digest = hashlib.sha256()
    shared = [root / folder for folder in _SHARED] if linked else []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".platform-cache"))
        by_stat = any(Path(folder).is_relative_to(top) for top in shared)
        for name in sorted(files):
            path = Path(folder, name)
            digest.update(str(path.relative_to(root)).encode())
            stat = path.lstat()
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif by_stat:
                digest.update(
                    f"{stat.st_mode} {stat.st_ino} {stat.st_size} {stat.st_mtime_ns}".encode()
                )
            else:
                digest.update(oct(stat.st_mode).encode() + path.read_bytes())
    index = root / ".git" / "index"
    return {
        "tree": digest.hexdigest(),
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else "",
        "refs": git(root, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": (root / ".git" / "HEAD").read_text(),
        "stash": git(root, "stash", "list"),
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_its_code_and_changes_nothing(
    template: Fleet, tmp_path: Path, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "clone"
    _copy(template.root, root)
    fleet = Fleet(root, template.stages, template.services)
    if case.setup is not None:
        case.setup(fleet)
    (fleet.root / "environments").chmod(0o755)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    names = {f"t{n}": stage for n, stage in enumerate(fleet.stages)}
    args = [arg.format(x=tmp_path / "empty", **names) for arg in case.args]
    before = state(root, linked=True)
    result = CliRunner().invoke(app, ["--repo", str(root), *args])
    assert result.exit_code == case.code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) <= 500
    assert "s3cret" not in result.stderr + result.stdout
    assert state(root, linked=True) == before


def test_the_battery_is_at_least_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)


def test_a_pull_request_without_a_token_is_refused_before_any_gate_or_verify(
    template: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The missing token is known before the gates and the policy gate run (seconds each):
    it is refused first, as a missing remote is."""
    root = tmp_path / "clone"
    _copy(template.root, root)
    fleet = Fleet(root, template.stages, template.services)
    with_remote(fleet)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(delivery, "evaluate", lambda *args: asked.append("gates"))
    monkeypatch.setattr(release, "verify", lambda *args: asked.append("verify"))
    result = CliRunner().invoke(
        app, ["--repo", str(root), "promote", "alpha", "--to", fleet.stages[2], "--pull-request"]
    )
    assert result.exit_code == 3, result.stderr
    assert "GitHub token" in result.stderr
    assert asked == []
