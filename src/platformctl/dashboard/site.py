"""What the pages read: the repository's model and views of its ledger, built once per head.

A page asks ``Site.cached(name, build)``; the result is kept until the checkout's head (or its
index, which a commit or a checkout rewrites) moves, so a second request costs one ``stat``
and one ``git rev-parse``. Uncommitted edits to the files are seen once they are committed or
staged, as the ledger is: the dashboard shows the branch, not a half-made edit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from platformctl.errors import ExitCode, PlatformError
from platformctl.git import Git
from platformctl.model import Environment, Repo, load_repo

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


class Site:
    """The repository a running ``platform serve`` shows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = Git(root)
        self._index = self.git.git_dir / "index"
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._snapshot: Snapshot | None = None
        self._views: dict[str, Any] = {}

    def _current_key(self) -> tuple[str, int]:
        try:
            index = os.stat(self._index).st_mtime_ns
        except FileNotFoundError:
            index = 0
        return self.git.head(), index

    def snapshot(self) -> Snapshot:
        """The model at the current head, loaded again only when the head moved."""
        try:
            with self._lock:
                key = self._current_key()
                if key != self._key or self._snapshot is None:
                    self._views = {}
                    self._snapshot = None
                    self._key = key
                    self._snapshot = Snapshot(key[0], load_repo(self.root), self.git)
                return self._snapshot
        except PlatformError as error:
            self._key = None
            raise PageError(status_of(error), str(error)) from error

    def cached(self, name: str, build: Callable[[Snapshot], T]) -> T:
        """``build(snapshot)``, computed once per head under ``name``."""
        snapshot = self.snapshot()
        with self._lock:
            if snapshot is self._snapshot and name in self._views:
                value: T = self._views[name]
                return value
        try:
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
                    self._value = (now, build(self.snapshot))
                except PlatformError as error:
                    raise PageError(status_of(error), str(error)) from error
            return self._value[1]
