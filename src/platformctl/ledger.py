"""Git as the release ledger: the history of a values file's image is the release history.

Releases are read from the file's *contents* across commits (so squash merges and hand edits
count), and enriched by the ``Platform-*`` trailers of commits this tool made, read as git
reads a trailer block (``%(trailers)``: only the message's last paragraph, so no text in the
body can pose as one). The history is the watched branch's first-parent line: a release's time
is when it reached the branch (a merge's time), never when a pull-request commit was made.
git walks the history in C and one ``git cat-file --batch`` reads every version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from platformctl.gates.results import GateResult, Verdict, parse_trailer
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.model import ENVIRONMENT_FILE, ENVIRONMENTS_DIR, Image, Release
from platformctl.status import same_artifact

# separators of the fields and records of a ``git log --format`` (never in a commit's text)
RECORD, FIELD = "\x1e", "\x1f"
# the commit's trailer block as git reads it: ``git interpret-trailers --parse`` of the message
TRAILERS = "%(trailers:only=true,unfold=true)"
_LOG_FORMAT = f"%H{FIELD}%cI{FIELD}%an{FIELD}%P{FIELD}{TRAILERS}{RECORD}"
# ``Platform-Release-Set: <source stage>@<12 hex of the source stage's commit>``: the set of
# images that ran together in the source stage, which a promote --all took (release_sets.py)
SET_TRAILER = "Platform-Release-Set"


@dataclass(frozen=True)
class Entry:
    """One release: the commit where the service's image in an environment became ``image``."""

    commit: str
    time: str
    author: str
    action: str  # promote | rollback | publish | manual
    image: Image
    from_environment: str | None
    reason: str | None
    # the gate evidence the tool recorded with this release (empty for hand edits)
    gates: tuple[GateResult, ...] = ()
    # a publish: the commit the image was built from and the CI run that built it
    source_commit: str | None = None
    build_url: str | None = None
    # the release set (``SET_TRAILER``) the release came with, if any
    release_set: str | None = None

    @property
    def overridden(self) -> list[str]:
        """The gates a recorded reason overrode for this release."""
        return [gate.gate for gate in self.gates if gate.verdict is Verdict.overridden]

    @property
    def origin(self) -> str | None:
        """Where the release came from: the stage before, or for a publish the build's commit."""
        if self.from_environment is None and self.source_commit:
            return f"build {self.source_commit[:12]}"
        return self.from_environment

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "time": self.time,
            "author": self.author,
            "action": self.action,
            "repository": self.image.repository,
            "tag": self.image.tag,
            "digest": self.image.digest,
            "from_environment": self.from_environment,
            "reason": self.reason,
            "gates": [gate.as_dict() for gate in self.gates],
            "source_commit": self.source_commit,
            "build_url": self.build_url,
            "release_set": self.release_set,
        }


def parse_trailers(block: str) -> dict[str, list[str]]:
    """``Key: value`` lines of a trailer block as git printed it (``%(trailers:only)``)."""
    found: dict[str, list[str]] = {}
    for line in block.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.startswith("Platform-"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def first_trailer(marks: Mapping[str, list[str]], key: str) -> str | None:
    values = marks.get(key)
    return values[0] if values else None


def tool_record(marks: Mapping[str, list[str]], service: str, environment: str) -> bool:
    """Whether trailers are this tool's record of ``service`` in ``environment`` (a commit
    names every service and environment it wrote: anything else it changed was by hand)."""
    return service in marks.get("Platform-Service", []) and (
        environment in marks.get("Platform-Environment", [])
    )


def values_path(release: Release) -> str:
    """The release's values file relative to its repository (``environments/<env>/<svc>``)."""
    return service_values_path(release.environment.name, release.service)


def service_values_path(environment: str, service: str) -> str:
    """A service's values file in an environment, relative to the repository, whether or not
    it has a release there now (history reads the files' past)."""
    return f"{ENVIRONMENTS_DIR}/{environment}/{service}.yaml"


def iter_history(git: Git, release: Release, revision: str = "HEAD") -> Iterator[Entry]:
    """Releases of one service in one environment, newest first, read lazily.

    ``git log --first-parent -- path`` lists the commits of the branch that changed the file
    (a merged pull request is its merge commit), newest first as git finds them; each version
    is read from one running ``git cat-file --batch`` as its commit arrives. A reader that
    stops early (a rollback finds its release among the newest) ends both there: git never
    walks the rest of a long history.
    """
    path = values_path(release)
    log = git.records(
        "log", "--first-parent", f"--format={_LOG_FORMAT}", revision, "--", path, separator=RECORD
    )
    with closing(log), git.blobs() as blobs:
        newer: tuple[list[str], Image] | None = None
        for record in log:
            if not record.strip():
                continue
            fields = record.strip("\n").split(FIELD, 4)
            blob = blobs.read(fields[0], path)
            image = image_of(blob.decode(errors="replace")) if blob is not None else None
            if image is None:
                continue
            if newer is not None and newer[1] != image:
                yield _entry(git, newer[0], newer[1], release, path)
            # the oldest commit of a run with one image is the one that released it
            newer = (fields, image)
        if newer is not None:
            yield _entry(git, newer[0], newer[1], release, path)


def merged(git: Git, merge: str, paths: Sequence[str]) -> dict[str, tuple[str, str]]:
    """path -> (author, trailers) of the commit that speaks for a merge without trailers of its
    own (a merged pull request), for each of ``paths`` the merge changed: the newest commit it
    brought in that changed the path, not a merge (an "Update branch" merge of the base into
    the pull request is none of its own), so a commit added on top that touches other files
    does not hide it. The one rule of the history, the metrics and the release sets; one
    ``git log`` per merge."""
    log = git.run(
        "log",
        "--no-merges",
        "--name-only",
        f"--format={RECORD}%an{FIELD}{TRAILERS}{FIELD}",
        f"{merge}^1..{merge}",
        "--",
        *paths,
    )
    found: dict[str, tuple[str, str]] = {}
    for record in log.split(RECORD):
        if record.strip():
            author, block, names = record.split(FIELD, 2)
            for name in names.split():
                found.setdefault(name, (author, block))
    return found


def _entry(git: Git, fields: list[str], image: Image, release: Release, path: str) -> Entry:
    commit, time, author, parents, block = fields
    if len(parents.split()) > 1 and not block.strip():
        # a merged pull request: the time is the merge's, the author and evidence the PR's
        author, block = merged(git, commit, [path]).get(path, (author, block))
    marks = parse_trailers(block)
    ours = tool_record(marks, release.service, release.environment.name)
    return Entry(
        commit=commit,
        time=time,
        author=author,
        action=marks.get("Platform-Action", ["manual"])[0] if ours else "manual",
        image=image,
        from_environment=first_trailer(marks, "Platform-From") if ours else None,
        reason=first_trailer(marks, "Platform-Reason") if ours else None,
        gates=tuple(
            gate
            for text in (marks.get("Platform-Gate", []) if ours else [])
            if (gate := parse_trailer(text)) is not None and gate.service in (None, release.service)
        ),
        source_commit=first_trailer(marks, "Platform-Source-Commit") if ours else None,
        build_url=first_trailer(marks, "Platform-Build-Url") if ours else None,
        release_set=first_trailer(marks, SET_TRAILER) if ours else None,
    )


def history(git: Git, release: Release, limit: int | None = None) -> list[Entry]:
    """Releases of one service in one environment, newest first."""
    return list(islice(iter_history(git, release), limit))


def last_good(entries: Iterable[Entry], current: Image) -> Image | None:
    """The newest release that is not the current one and was never rolled back from.

    Walks newest first and stops at the answer: a rollback marks the release just before it
    (the one it replaced) as bad, and rollbacks are always newer than what they replaced.
    """
    bad: list[Image] = []
    replaced_by_rollback = False
    for entry in entries:
        if replaced_by_rollback:
            bad.append(entry.image)
        replaced_by_rollback = entry.action == "rollback"
        if same_artifact(entry.image, current) or any(
            same_artifact(entry.image, image) for image in bad
        ):
            continue
        return entry.image
    return None


@dataclass(frozen=True)
class HoldEvent:
    """A hold or unhold of the service in the environment, as this tool recorded it."""

    commit: str
    time: str
    author: str
    action: str  # hold | unhold
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hold_events(git: Git, release: Release, revision: str = "HEAD") -> Iterator[HoldEvent]:
    """Holds and unholds of the release's service in its environment, newest first: the
    commits of the environment's settings file whose trailers name both (a rollback's own
    hold is the rollback, listed with the releases)."""
    environment = release.environment
    path = str(Path(environment.path.parent.name, environment.path.name, ENVIRONMENT_FILE))
    log = git.records(
        "log", "--first-parent", f"--format={_LOG_FORMAT}", revision, "--", path, separator=RECORD
    )
    with closing(log):
        for record in log:
            if not record.strip():
                continue
            commit, time, author, _, block = record.strip("\n").split(FIELD, 4)
            marks = parse_trailers(block)
            action = first_trailer(marks, "Platform-Action")
            if action in ("hold", "unhold") and tool_record(
                marks, release.service, environment.name
            ):
                reason = first_trailer(marks, "Platform-Reason")
                yield HoldEvent(commit, time, author, action, reason)


def rolled_back(entries: Iterable[Entry]) -> set[str]:
    """The commits (of ``entries``, newest first) whose release a later rollback replaced."""
    marked: set[str] = set()
    replaced_by_rollback = False
    for entry in entries:
        if replaced_by_rollback:
            marked.add(entry.commit)
        replaced_by_rollback = entry.action == "rollback"
    return marked


@dataclass(frozen=True)
class ImageCommit:
    """A first-parent commit that changed the image of some of the files walked."""

    commit: str
    time: str
    # the commit's trailers (a merged pull request's: those of the commit it brought in)
    marks: Mapping[str, list[str]]
    # path -> (image before, image after), for the paths whose image this commit changed
    images: Mapping[str, tuple[Image | None, Image | None]]

    def made_by(self, action: str, environment: str) -> list[str]:
        """The services this tool's ``action`` in ``environment`` names (none otherwise)."""
        if first_trailer(self.marks, "Platform-Action") != action:
            return []
        services = self.marks.get("Platform-Service", [])
        return [service for service in services if tool_record(self.marks, service, environment)]


def image_changes(git: Git, paths: Sequence[str], revision: str = "HEAD") -> Iterator[ImageCommit]:
    """The commits of the branch's first-parent line that changed the image of any of
    ``paths``, newest first, read lazily: one ``git log`` names the files each commit touched
    and one ``git cat-file --batch`` reads just those files before and after it."""
    log = git.records(
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--name-only",
        f"--format={RECORD}%H{FIELD}%cI{FIELD}%P{FIELD}{TRAILERS}{FIELD}",
        revision,
        "--",
        *paths,
        separator=RECORD,
    )
    wanted = set(paths)
    with closing(log), git.blobs() as blobs:
        for record in log:
            if not record.strip():
                continue
            commit, time, parents, block, names = record.split(FIELD, 4)
            images: dict[str, tuple[Image | None, Image | None]] = {}
            for path in (name for name in names.split() if name in wanted):
                after = image_in(blobs.read(commit, path))
                before = image_in(blobs.read(f"{commit}^1", path)) if parents else None
                if before != after:
                    images[path] = (before, after)
            if not images:
                continue
            if len(parents.split()) > 1 and not block.strip():
                # the newest of the commits that speak for the paths whose image changed
                block = next(iter(merged(git, commit, list(images)).values()), ("", ""))[1]
            yield ImageCommit(commit, time, parse_trailers(block), images)


def image_in(blob: bytes | None) -> Image | None:
    """The image of a values file's contents (None: no file, or no image line)."""
    return image_of(blob.decode(errors="replace")) if blob is not None else None


def first_parent_line(git: Git, events: Iterable[Entry | HoldEvent]) -> list[str]:
    """The branch's commits, newest first, down to the oldest of ``events`` (the order
    ``history`` shows releases and holds in)."""
    wanted = {event.commit for event in events}
    found: list[str] = []
    with closing(git.records("rev-list", "--first-parent", "HEAD", separator="\n")) as commits:
        for commit in commits:
            found.append(commit.strip())
            wanted.discard(found[-1])
            if not wanted:
                break
    return found


def set_lines(sets: Mapping[tuple[str, str], str | None]) -> list[str]:
    """``set: production runs staging@0123456789ab (api, web)``: per environment and set,
    the services whose image came with it (of ``current_sets``)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for (service, environment), set_id in sets.items():
        if set_id is not None:
            grouped.setdefault((environment, set_id), []).append(service)
    return [
        f"set: {environment} runs {set_id} ({', '.join(services)})"
        for (environment, set_id), services in grouped.items()
    ]


def current_sets(git: Git, releases: Iterable[Release]) -> dict[tuple[str, str], str | None]:
    """(service, environment) -> the release set its current image came with (None: it came
    some other way). Per environment, one walk back until each file's image last changed."""
    releases = list(releases)
    if git.rev("HEAD") is None:  # an exported tree, not a clone: no ledger to read
        return {(release.service, release.environment.name): None for release in releases}
    by_environment: dict[str, dict[str, Release]] = {}
    for release in releases:
        by_environment.setdefault(release.environment.name, {})[values_path(release)] = release
    found: dict[tuple[str, str], str | None] = {}
    for environment, files in by_environment.items():
        pending = dict(files)
        for change in image_changes(git, list(files)):
            for path in [path for path in change.images if path in pending]:
                release = pending.pop(path)
                ours = release.service in change.made_by("promote", environment) or (
                    release.service in change.made_by("rollback", environment)
                )
                key = (release.service, environment)
                found[key] = first_trailer(change.marks, SET_TRAILER) if ours else None
            if not pending:
                break
        found.update({(r.service, environment): None for r in pending.values()})
    return {
        (r.service, r.environment.name): found[(r.service, r.environment.name)] for r in releases
    }
