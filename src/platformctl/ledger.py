"""Git as the release ledger: the history of a values file's image is the release history.

Releases are read from the file's *contents* across commits (so squash merges and hand edits
count), and enriched by the ``Platform-*`` trailers of commits this tool made. git walks the
history in C (``git log -- path``) and one ``git cat-file --batch`` process reads every version;
nothing walks commits in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from platformctl.gates.results import GateResult, parse_trailer
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.model import Image, Release
from platformctl.status import same_artifact

TRAILER = re.compile(r"^(Platform-[A-Za-z]+):[ \t]*(.*?)\s*$", re.MULTILINE)
_RECORD, _FIELD = "\x1e", "\x1f"


@dataclass(frozen=True)
class Entry:
    """One release: the commit where the service's image in an environment became ``image``."""

    commit: str
    time: str
    author: str
    action: str  # promote | rollback | manual
    image: Image
    from_environment: str | None
    reason: str | None
    # the gate evidence the tool recorded with this release (empty for hand edits)
    gates: tuple[GateResult, ...] = ()

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
        }


def trailers(message: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in TRAILER.findall(message):
        found.setdefault(key, []).append(value)
    return found


def _first(marks: dict[str, list[str]], key: str) -> str | None:
    values = marks.get(key)
    return values[0] if values else None


def _read_versions(git: Git, commits: list[str], path: str) -> list[str | None]:
    """Contents of ``path`` at each commit, through one ``git cat-file --batch``."""
    output = git.run("cat-file", "--batch", input_text="".join(f"{c}:{path}\n" for c in commits))
    contents: list[str | None] = []
    position = 0
    data = output.encode()
    for _ in commits:
        end = data.index(b"\n", position)
        header = data[position:end].decode()
        position = end + 1
        if header.endswith("missing"):
            contents.append(None)
            continue
        size = int(header.rsplit(" ", 1)[1])
        contents.append(data[position : position + size].decode())
        position += size + 1
    return contents


def iter_history(git: Git, release: Release, chunk: int = 64) -> Iterator[Entry]:
    """Releases of one service in one environment, newest first, read lazily.

    ``git log -- path`` lists the commits that touched the file (in C); their versions are
    read a chunk at a time, so a rollback that finds its release among the newest commits
    never parses the rest of a long history.
    """
    path = str(release.values_file.relative_to(git.root))
    log = git.run(
        "log",
        "--no-merges",
        f"--format=%H{_FIELD}%cI{_FIELD}%an{_FIELD}%B{_RECORD}",
        "--",
        path,
    )
    records = [r.strip("\n").split(_FIELD, 3) for r in log.split(_RECORD) if r.strip()]
    newer: tuple[list[str], Image] | None = None
    for offset in range(0, len(records), chunk):
        batch = records[offset : offset + chunk]
        for fields, text in zip(
            batch, _read_versions(git, [f[0] for f in batch], path), strict=True
        ):
            image = image_of(text) if text is not None else None
            if image is None:
                continue
            if newer is not None and newer[1] != image:
                yield _entry(newer[0], newer[1], release)
            # the oldest commit of a run with one image is the one that released it
            newer = (fields, image)
    if newer is not None:
        yield _entry(newer[0], newer[1], release)


def _entry(fields: list[str], image: Image, release: Release) -> Entry:
    commit, time, author, message = fields
    marks = trailers(message)
    ours = release.service in marks.get("Platform-Service", []) and (
        release.environment.name in marks.get("Platform-Environment", [])
    )
    return Entry(
        commit=commit,
        time=time,
        author=author,
        action=marks.get("Platform-Action", ["manual"])[0] if ours else "manual",
        image=image,
        from_environment=_first(marks, "Platform-From") if ours else None,
        reason=_first(marks, "Platform-Reason") if ours else None,
        gates=tuple(
            gate
            for text in (marks.get("Platform-Gate", []) if ours else [])
            if (gate := parse_trailer(text)) is not None and gate.service in (None, release.service)
        ),
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
