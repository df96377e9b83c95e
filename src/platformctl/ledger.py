"""Git as the release ledger: the history of a values file's image is the release history.

Releases are read from the file's *contents* across commits (so squash merges and hand edits
count), and enriched by the ``Platform-*`` trailers of commits this tool made, read as git
reads a trailer block (``%(trailers)``: only the message's last paragraph, so no text in the
body can pose as one). The history is the watched branch's first-parent line: a release's time
is when it reached the branch (a merge's time), never when a pull-request commit was made.
git walks the history in C and one ``git cat-file --batch`` reads every version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from platformctl.gates.results import GateResult, parse_trailer
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.model import ENVIRONMENT_FILE, Image, Release
from platformctl.status import same_artifact

_RECORD, _FIELD = "\x1e", "\x1f"
_TRAILERS = "%(trailers:only=true,unfold=true)"
_LOG_FORMAT = f"%H{_FIELD}%cI{_FIELD}%an{_FIELD}%P{_FIELD}{_TRAILERS}{_RECORD}"


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
        }


def parse_trailers(block: str) -> dict[str, list[str]]:
    """``Key: value`` lines of a trailer block as git printed it (``%(trailers:only)``)."""
    found: dict[str, list[str]] = {}
    for line in block.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.startswith("Platform-"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def first_trailer(marks: dict[str, list[str]], key: str) -> str | None:
    values = marks.get(key)
    return values[0] if values else None


def values_path(release: Release) -> str:
    """The release's values file relative to its repository (``environments/<env>/<svc>``)."""
    environment = release.environment.path
    return str(Path(environment.parent.name, environment.name, release.values_file.name))


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
        "log", "--first-parent", f"--format={_LOG_FORMAT}", revision, "--", path, separator=_RECORD
    )
    with closing(log), git.blobs() as blobs:
        newer: tuple[list[str], Image] | None = None
        for record in log:
            if not record.strip():
                continue
            fields = record.strip("\n").split(_FIELD, 4)
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


def _merged(git: Git, merge: str, path: str) -> tuple[str, str]:
    """(author, trailers) of the newest commit a merge brought in that changed ``path``."""
    record = git.run(
        "log",
        "-1",
        "--no-merges",
        f"--format=%an{_FIELD}{_TRAILERS}",
        f"{merge}^1..{merge}",
        "--",
        path,
    )
    author, _, block = record.partition(_FIELD)
    return author, block


def _entry(git: Git, fields: list[str], image: Image, release: Release, path: str) -> Entry:
    commit, time, author, parents, block = fields
    if len(parents.split()) > 1 and not block.strip():
        # a merged pull request: the time is the merge's, the author and evidence the PR's
        author, block = _merged(git, commit, path)
    marks = parse_trailers(block)
    ours = release.service in marks.get("Platform-Service", []) and (
        release.environment.name in marks.get("Platform-Environment", [])
    )
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
        "log", "--first-parent", f"--format={_LOG_FORMAT}", revision, "--", path, separator=_RECORD
    )
    with closing(log):
        for record in log:
            if not record.strip():
                continue
            commit, time, author, _, block = record.strip("\n").split(_FIELD, 4)
            marks = parse_trailers(block)
            action = first_trailer(marks, "Platform-Action")
            if (
                action in ("hold", "unhold")
                and release.service in marks.get("Platform-Service", [])
                and environment.name in marks.get("Platform-Environment", [])
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
