"""``.platform-cache/``: files that only make commands faster, never change their answers.

Each file is written whole and atomically; one that is missing, unreadable or written by
other engines is simply empty, and a cache that cannot be written (a read-only checkout) is
skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson

CACHE_DIR = ".platform-cache"
# A folder that several checkouts share (a CI runner's cache, a test session): every entry is
# keyed by content (file texts, rendered documents, a chart's absolute path with its files'
# stats), never by where a checkout is, so sharing one changes no answer.
SHARED_CACHE_VARIABLE = "PLATFORM_CACHE_DIR"


# False inside ``reading_only``: the dashboard's pages must leave the checkout as they found it
_WRITES: ContextVar[bool] = ContextVar("platformctl_cache_writes", default=True)


@contextlib.contextmanager
def reading_only() -> Iterator[None]:
    """Within it (this thread or task only), caches are read as usual and never written,
    touched or pruned: what a read-only reader such as ``platform serve`` needs."""
    token = _WRITES.set(False)
    try:
        yield
    finally:
        _WRITES.reset(token)


def writes_allowed() -> bool:
    return _WRITES.get()


def cache_dir(root: Path) -> Path:
    """Where a repository's caches live: ``$PLATFORM_CACHE_DIR`` when set, else
    ``.platform-cache/`` in the checkout."""
    shared = os.environ.get(SHARED_CACHE_VARIABLE)
    return Path(shared) if shared else root / CACHE_DIR


def read_cache(path: Path | None, fingerprint: str) -> dict[str, Any]:
    """The entries of a cache file written with the same ``fingerprint``, else none."""
    if path is None or not path.is_file():
        return {}
    try:
        # orjson reads the stored renders (the twin reads every one of an environment on
        # each promotion) ~3 times faster; a file it refuses is a miss, as any unreadable
        # one is (what it would read differently is never stored: ``survives_json``)
        data = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and data.get("fingerprint") == fingerprint:
        entries = data.get("entries")
        return dict(entries) if isinstance(entries, dict) else {}
    return {}


def write_cache(path: Path, fingerprint: str, entries: dict[str, Any]) -> None:
    if not _WRITES.get():
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        gitignore = path.parent / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")
        try:
            # no NaN or infinity: orjson would refuse the whole file
            text = json.dumps({"fingerprint": fingerprint, "entries": entries}, allow_nan=False)
        except ValueError:
            return
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except OSError:
            # a full disk or a folder turned read-only: no half-written file left behind
            os.unlink(temporary)
            raise


def survives_json(value: Any) -> bool:
    """Whether ``value`` reads back from a cache file exactly (no dates, tuples, non-string
    keys, NaN, or integers past 64 bits, which orjson reads as floats). Compared as text: a
    float read back equals the integer it replaced."""
    try:
        text = json.dumps(value, allow_nan=False)
        back = orjson.loads(text)
        return bool(back == value) and json.dumps(back, allow_nan=False) == text
    except (TypeError, ValueError):
        return False
