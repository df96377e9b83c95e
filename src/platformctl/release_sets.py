"""Release sets: the images that ran together in a stage, promoted and rolled back as one.

A set is the source stage's images between two commits of the watched branch's first-parent
line that changed one of them: it started at the first and ran until the second (or runs
still). Its id, ``<stage>@<12 hex of the commit it started at>``, is recorded in the commit
trailers (``ledger.SET_TRAILER``) and read back only from git's trailer block.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from platformctl.errors import InputError, RefusedError
from platformctl.gates.config import format_duration
from platformctl.gates.results import GateResult, Verdict
from platformctl.git import Git
from platformctl.ledger import FIELD as _FIELD
from platformctl.ledger import RECORD as _RECORD
from platformctl.ledger import SET_TRAILER, image_changes, image_in, parse_trailers, values_path
from platformctl.model import ENVIRONMENTS_DIR, Environment, Image, Repo
from platformctl.status import same_artifact

# ``Platform-Rolled-Back-Set: <id>``: an automatic rollback undid the promotion of that set
# (every service it changed); the rollback puts no set in place, so it carries no SET_TRAILER
UNDONE_SET_TRAILER = "Platform-Rolled-Back-Set"
_ID = re.compile(r"^(?P<stage>[a-z0-9][-a-z0-9]*)@(?P<commit>[0-9a-f]{12})$")


@dataclass(frozen=True)
class ReleaseSet:
    stage: str
    commit: str  # the commit of the watched branch the set started at
    since: dt.datetime
    until: dt.datetime | None  # when the stage's next image change replaced it; None: it runs
    images: Mapping[str, Image]  # service -> image
    # what the commit the set started at rolled back from in the stage (service -> image)
    replaced: Mapping[str, Image] = field(default_factory=dict)
    # service -> the other images the stage ran after the set (``soaked_set`` fills it in)
    later: Mapping[str, tuple[Image, ...]] = field(default_factory=dict)

    def runs_later(self, service: str, image: Image) -> bool:
        """Whether ``image`` is a release of ``service`` the stage ran after this set."""
        return any(same_artifact(image, newer) for newer in self.later.get(service, ()))

    @property
    def id(self) -> str:
        return f"{self.stage}@{self.commit[:12]}"

    def ran(self, now: dt.datetime) -> dt.timedelta:
        return (self.until or now) - self.since

    def describe(self, now: dt.datetime) -> str:
        state = "runs there still" if self.until is None else "replaced since"
        return (
            f"release set {self.id}: {self.stage} as of {self.commit[:12]} "
            f"({self.since.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC), "
            f"{format_duration(self.ran(now))} unchanged, "
            f"{state}"
        )

    def as_dict(self, now: dt.datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "stage": self.stage,
            "commit": self.commit,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "ran_seconds": int(self.ran(now).total_seconds()),
        }


def sets_of(
    git: Git, repo: Repo, stage: str, revision: str = "HEAD"
) -> Generator[ReleaseSet, None, None]:
    """The sets ``stage`` ran, newest first (services: those deployed there now)."""
    files = {
        values_path(release): service
        for (service, environment), release in repo.releases.items()
        if environment == stage
    }
    blobs = git.read_files([(revision, path) for path in files])
    state = {
        path: image for path, blob in zip(files, blobs, strict=True) if (image := image_in(blob))
    }
    until: dt.datetime | None = None
    for change in image_changes(git, list(files), revision):
        since = dt.datetime.fromisoformat(change.time)
        rolled_back = set(change.made_by("rollback", stage))
        replaced = {
            files[path]: before
            for path, (before, _) in change.images.items()
            if before is not None and files[path] in rolled_back
        }
        images = {files[path]: image for path, image in state.items()}
        yield ReleaseSet(stage, change.commit, since, until, images, replaced)
        until = since
        for path, (before, _) in change.images.items():
            if before is None:
                state.pop(path, None)
            else:
                state[path] = before


def soaked_set(
    git: Git,
    repo: Repo,
    source: Environment,
    minimum: dt.timedelta | None,
    now: dt.datetime,
    revision: str = "HEAD",
) -> ReleaseSet:
    """The newest set of ``source`` that ran unchanged for ``minimum`` (None: the current
    one) and holds no release a later rollback in ``source`` replaced, with the images the
    stage ran after it (``ReleaseSet.later``). Refuses (exit 1) naming when the newest
    candidate will have soaked if none did."""
    newest: ReleaseSet | None = None
    bad: dict[str, list[Image]] = {}
    ran: dict[str, list[Image]] = {}
    walk = sets_of(git, repo, source.name, revision)
    for candidate in walk:
        if not _tainted(candidate, bad):
            if minimum is None or candidate.ran(now) >= minimum:
                walk.close()
                later = {
                    service: tuple(i for i in images if not same_artifact(i, own))
                    for service, images in ran.items()
                    if (own := candidate.images.get(service)) is not None
                }
                return replace(candidate, later=later)
            newest = newest or candidate
        for service, image in candidate.replaced.items():
            bad.setdefault(service, []).append(image)
        for service, image in candidate.images.items():
            ran.setdefault(service, []).append(image)
    if newest is None:
        raise RefusedError(f"{source.name} has no release to promote")
    assert minimum is not None
    ready = (newest.since + minimum).astimezone(dt.UTC)
    raise RefusedError(
        f"no release set of {source.name} has run {format_duration(minimum)} unchanged: "
        f"the newest, {newest.id}, will have at {ready:%Y-%m-%d %H:%M} UTC",
        hint="run again then, or take the current state with --override soak --reason TEXT",
    )


def _tainted(candidate: ReleaseSet, bad: Mapping[str, list[Image]]) -> bool:
    return any(
        same_artifact(image, replaced)
        for service, image in candidate.images.items()
        for replaced in bad.get(service, ())
    )


def soak_evidence(chosen: ReleaseSet, minimum: dt.timedelta, now: dt.datetime) -> GateResult:
    """The soak gate's row for a set: how long it ran unchanged, against the minimum."""
    ran = chosen.ran(now)
    verdict = Verdict.passed if ran >= minimum else Verdict.failed
    sign = "≥" if verdict is Verdict.passed else "<"
    measured = (
        f"set {chosen.id} ran {format_duration(ran)} in {chosen.stage} "
        f"{sign} {format_duration(minimum)}"
    )
    return GateResult("soak", None, verdict, measured)


def parse_set_id(text: str) -> tuple[str, str]:
    match = _ID.fullmatch(text.lower())
    if match is None:
        raise InputError(
            f"--set {text!r} is not a release set id",
            hint="an id is STAGE@COMMIT (12 hex), as platform history and status show it",
        )
    return match["stage"], match["commit"]


def images_set_put(
    git: Git, repo: Repo, environment: Environment, set_id: str, services: Collection[str]
) -> ReleaseSet:
    """What the promotion of ``set_id`` into ``environment`` put there: for every one of
    ``services`` that ran the set's image in ``environment`` right after that commit, that
    image (with the digest the promotion recorded). Unknown id or another stage's: exit 2."""
    stage, short = parse_set_id(set_id)
    wanted = f"{stage}@{short}"
    line = git.run("rev-list", "--first-parent", "HEAD").split()
    went_to: list[str] = []
    promotion = None
    for commit, marks in _carrying(git, wanted, line):
        if wanted not in marks.get(SET_TRAILER, []) or marks.get("Platform-Action") != ["promote"]:
            continue  # a forged line outside the trailer block, or a rollback to the set
        if environment.name in marks.get("Platform-Environment", []):
            promotion = commit
            break
        went_to += marks.get("Platform-Environment", [])
    if promotion is None:
        where = f"it went into {', '.join(dict.fromkeys(went_to))}" if went_to else "none"
        raise InputError(
            f"no promotion into {environment.name} carries release set {wanted} ({where})",
            hint=f"see the sets of {environment.name}: platform status -e {environment.name}",
        )
    source = commit_on_line(short, line, f"release set {wanted}")
    since = dt.datetime.fromisoformat(git.run("log", "-1", "--format=%cI", source).strip())
    names = sorted(services)
    paths = [f"{ENVIRONMENTS_DIR}/{environment.name}/{s}.yaml" for s in names]
    origin = [f"{ENVIRONMENTS_DIR}/{stage}/{s}.yaml" for s in names]
    put = git.read_files([(promotion, path) for path in paths])
    ran = git.read_files([(source, path) for path in origin])
    found = {}
    for service, after, before in zip(names, put, ran, strict=True):
        image, set_image = image_in(after), image_in(before)
        if image is not None and set_image is not None and same_artifact(image, set_image):
            found[service] = image
    return ReleaseSet(stage, source, since, None, found)


_TRAILERS = "%(trailers:only=true,unfold=true)"


def _carrying(git: Git, wanted: str, line: Sequence[str]) -> list[tuple[str, dict[str, list[str]]]]:
    """The commits of the first-parent ``line`` whose trailers name set ``wanted``, newest
    first, with those trailers: a commit made on the line, or a merged pull request, read as
    the ledger reads one (its own block empty: that of the newest commit it brought in). A
    commit of a side branch is no promotion of its own."""
    position = {commit: index for index, commit in enumerate(line)}
    log = git.run(
        "log",
        "--fixed-strings",
        f"--grep={SET_TRAILER}: {wanted}",
        f"--format=%H{_FIELD}{_TRAILERS}{_RECORD}",
        "HEAD",
    )
    found = []
    for record in log.split(_RECORD):
        if not record.strip():
            continue
        commit, block = record.strip("\n").split(_FIELD, 1)
        landed = commit if commit in position else _merge_of(git, commit, position)
        if landed is not None:
            found.append((position[landed], landed, parse_trailers(block)))
    return [(landed, marks) for _, landed, marks in sorted(found)]


def _merge_of(git: Git, commit: str, position: Mapping[str, int]) -> str | None:
    """The merge of the line that brought ``commit`` in as its newest commit, or None."""
    descendants = git.run("rev-list", "--ancestry-path", f"{commit}..HEAD").split()
    merge = max((c for c in descendants if c in position), key=position.__getitem__, default=None)
    if merge is None or git.run("log", "-1", f"--format={_TRAILERS}", merge).strip():
        return None
    newest = git.run("log", "-1", "--no-merges", "--format=%H", f"{merge}^1..{merge}").strip()
    return merge if newest == commit else None


def commit_on_line(prefix: str, line: Sequence[str], what: str) -> str:
    """The one commit of the first-parent ``line`` that starts with ``prefix`` (not a ref of
    that name); none, or more than one, is exit 2."""
    matches = [commit for commit in line if commit.startswith(prefix)]
    if len(matches) > 1:
        raise InputError(
            f"{what}: commit {prefix} is ambiguous, {len(matches)} commits of the branch "
            "start with it",
            hint="roll the services back one by one: platform rollback SERVICE --to COMMIT",
        )
    if not matches:
        raise InputError(f"{what}: commit {prefix} is not in the branch's history")
    return matches[0]
