"""What the pages read: the repository's model and views of its ledger, built once per state.

A page asks ``Site.cached(name, build)``; the result is kept until the checkout changes: its
head moves (a commit, a checkout, an amend) or a file under ``environments/`` changes (what
``platform status`` reads, so the matrix never disagrees with it). Finding that out costs one
``git rev-parse`` and a ``stat`` of each file of ``environments/`` (~1 ms for 400 files). Each
view is built once per state even when requests arrive together (an HTMX poll of several
tabs); they wait for the one build. Everything is read under ``cachefile.reading_only``: a
page never writes a cache file into the checkout.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from platformctl.cachefile import reading_only
from platformctl.errors import ExitCode, PlatformError
from platformctl.git import Git
from platformctl.model import ENVIRONMENTS_DIR, Environment, Repo, load_repo

T = TypeVar("T")


class PageError(Exception):
    """A page that cannot be shown: the CLI's one-line message and the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(error: PlatformError) -> int:
    """The HTTP status of an error the library raised while building a page: a repository
    that fails to load, or git failing, is the server's problem (500, 503), not the URL's."""
    if error.exit_code is ExitCode.ENVIRONMENT:
        return 503
    return 500


@dataclass(frozen=True)
class Snapshot:
    """The repository at one head: its model and the git to read its ledger with."""

    head: str
    repo: Repo
    git: Git


def _tree_signature(folder: Path) -> str:
    """A digest of every file's path, size and mtime under ``folder``."""
    digest = hashlib.blake2b(digest_size=16)
    pending = [folder]
    while pending:
        try:
            entries = sorted(os.scandir(pending.pop()), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            digest.update(f"{entry.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Site:
    """The repository a running ``platform serve`` shows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = Git(root)
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._snapshot: Snapshot | None = None
        self._views: dict[str, Any] = {}
        self._building: dict[str, threading.Lock] = {}

    def _current_key(self) -> tuple[str, str]:
        return self.git.head(), _tree_signature(self.root / ENVIRONMENTS_DIR)

    def version(self) -> str:
        """A short name of the state the last snapshot was taken at (for HTMX polls)."""
        self.snapshot()
        key = self._key or ("", "")
        return hashlib.blake2b("\0".join(key).encode(), digest_size=8).hexdigest()

    def snapshot(self) -> Snapshot:
        """The model of the checkout as it is now, loaded again only when it changed."""
        try:
            with self._lock:
                key = self._current_key()
                if key != self._key or self._snapshot is None:
                    self._views, self._building = {}, {}
                    self._snapshot = None
                    self._key = key
                    with reading_only():
                        repo = load_repo(self.root)
                    self._snapshot = Snapshot(key[0], repo, self.git)
                return self._snapshot
        except PlatformError as error:
            self._key = None
            raise PageError(status_of(error), str(error)) from error

    def cached(self, name: str, build: Callable[[Snapshot], T]) -> T:
        """``build(snapshot)``, computed once per state under ``name``; requests that ask
        for it while it is being built wait for that build."""
        snapshot = self.snapshot()
        with self._lock:
            if snapshot is self._snapshot and name in self._views:
                found: T = self._views[name]
                return found
            gate = self._building.setdefault(name, threading.Lock())
        with gate:
            with self._lock:
                if snapshot is self._snapshot and name in self._views:
                    built: T = self._views[name]
                    return built
            try:
                with reading_only():
                    value = build(snapshot)
            except PlatformError as error:
                raise PageError(status_of(error), str(error)) from error
            with self._lock:
                if snapshot is self._snapshot:
                    self._views[name] = value
            return value

    def environment(self, name: str) -> Environment:
        """The environment a URL names; 404 with the CLI's message (closest name) if none."""
        try:
            return self.snapshot().repo.environment(name)
        except PlatformError as error:
            raise PageError(404, str(error)) from error

    def service(self, name: str) -> str:
        """The service a URL names; 404 with the CLI's message (closest name) if none."""
        try:
            return self.snapshot().repo.service(name)
        except PlatformError as error:
            raise PageError(404, str(error)) from error


class Fresh(Generic[T]):
    """One head's value of a view that also depends on the clock: built again once ``ttl``
    seconds old. Kept through ``Site.cached``, so a new head starts a new one."""

    def __init__(self, snapshot: Snapshot, ttl: float) -> None:
        self.snapshot = snapshot
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self, build: Callable[[Snapshot], T]) -> T:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._value[0] >= self.ttl:
                try:
                    with reading_only():
                        self._value = (now, build(self.snapshot))
                except PlatformError as error:
                    raise PageError(status_of(error), str(error)) from error
            return self._value[1]
