"""``.platform-cache/verify-last.json``: the last ``platform verify`` result of each environment.

The dashboard's Findings page reads it and never runs the gate itself. Advisory like every
cache (``platformctl.cachefile``): written whole and atomically after each run, pass or fail;
a record that is missing, unreadable, of another format or malformed reads as no result, and
one that cannot be written is skipped without changing verify's answer. A cache folder that
several checkouts share (``$PLATFORM_CACHE_DIR``) holds one record per checkout, keyed by its
path, so one checkout's result never shows as another's.

Findings are kept in the shape ``platform verify -o json`` prints them (``report_findings``
and friends are that serialisation, used by both).
"""

from __future__ import annotations

import datetime as dt
import fcntl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformctl.cachefile import cache_dir, read_cache, write_cache
from platformctl.errors import PlatformError, redact
from platformctl.git import Git

if TYPE_CHECKING:  # the page reads the record without importing the gate's engines
    from platformctl.policy.exceptions import Excepted, UnusedException
    from platformctl.policy.findings import Finding
    from platformctl.verify import VerifyReport

RECORD_FILE = "verify-last.json"
# The record's format: a file of another one reads as empty (and is replaced by the next run).
RECORD_FORMAT = "verify-last/1"
# Checkouts kept in a shared cache folder, most recently verified first.
CHECKOUTS_KEPT = 50


def finding_json(finding: Finding) -> dict[str, Any]:
    """A failing finding as ``verify -o json`` prints it."""
    return finding.as_dict()


def excepted_json(item: Excepted) -> dict[str, Any]:
    """An excepted finding as ``verify -o json`` prints it: the finding, why and until when."""
    return {
        **item.finding.as_dict(),
        "reason": item.exception.reason,
        "expires": item.exception.expires.isoformat(),
    }


def unused_json(item: UnusedException) -> dict[str, str]:
    """An exception that matched nothing, as ``verify -o json`` prints it."""
    return {"check": item.check, "target": item.target, "where": item.where}


def record_path(root: Path) -> Path:
    return cache_dir(root) / RECORD_FILE


@dataclass(frozen=True)
class EnvironmentResult:
    """One environment's part of one verify run."""

    environment: str
    at: str  # when the run ended, ISO 8601 in UTC
    commit: str | None  # HEAD when it ran (None: no commit yet, or no git)
    dirty: bool  # the working tree, which verify reads, differed from HEAD
    services: tuple[str, ...]  # the run's ``-s`` scope; empty: the whole environment
    targets: int
    failing: tuple[dict[str, Any], ...]
    excepted: tuple[dict[str, Any], ...]
    unused_exceptions: int
    warnings: int

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.at)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "commit": self.commit,
            "dirty": self.dirty,
            "scope": {"services": list(self.services) or None},
            "ok": self.ok,
            "counts": {
                "targets": self.targets,
                "failing": len(self.failing),
                "excepted": len(self.excepted),
                "unused_exceptions": self.unused_exceptions,
                "warnings": self.warnings,
            },
            "findings": list(self.failing),
            "excepted": list(self.excepted),
        }

    @classmethod
    def from_json(cls, environment: str, data: Any) -> EnvironmentResult | None:
        """The entry as written, or None when it is not (a hand edit, a half-understood
        older format): the page then says no result is recorded rather than guess."""
        try:
            counts = data["counts"]
            services = data["scope"]["services"] or []
            result = cls(
                environment=environment,
                at=str(data["at"]),
                commit=None if data["commit"] is None else str(data["commit"]),
                dirty=bool(data["dirty"]),
                services=tuple(str(name) for name in services),
                targets=int(counts["targets"]),
                failing=tuple(_mapping(item) for item in data["findings"]),
                excepted=tuple(_mapping(item) for item in data["excepted"]),
                unused_exceptions=int(counts["unused_exceptions"]),
                warnings=int(counts["warnings"]),
            )
            if result.when.tzinfo is None:
                return None
        except (KeyError, TypeError, ValueError):
            return None
        return result


def _mapping(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in _FINDING_KEYS):
        raise ValueError("not a finding")
    return dict(item)


_FINDING_KEYS = ("target", "check", "resource", "message", "engine")


def _redacted(value: Any) -> Any:
    """Credentials of any URL in a message blanked, as the CLI prints them."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def _owners(target: str, verified: Sequence[str]) -> list[str]:
    """The environments a finding is recorded under: the one its target names; one that
    names no verified environment (the Argo CD chart's calendar, an expired exception for
    ``*/web`` or for an environment this run left out) failed the whole run, so every
    environment it verified."""
    head = target.split("/", 1)[0]
    return [name for name in verified if fnmatchcase(name, head)] or list(verified)


def results_of(
    report: VerifyReport,
    environment_order: Iterable[str],
    services: Sequence[str],
    *,
    commit: str | None,
    dirty: bool,
    now: dt.datetime,
) -> list[EnvironmentResult]:
    """Each verified environment's part of ``report``: an environment is verified when the
    run checked one of its targets (a ``-s`` run skips those where the services are not)."""
    checked = {target.environment for target in report.targets}
    verified = [name for name in environment_order if name in checked]
    failing: dict[str, list[dict[str, Any]]] = {name: [] for name in verified}
    excepted: dict[str, list[dict[str, Any]]] = {name: [] for name in verified}
    unused = dict.fromkeys(verified, 0)
    for finding in report.failing:
        for name in _owners(finding.target, verified):
            failing[name].append(_redacted(finding_json(finding)))
    for item in report.excepted:
        for name in _owners(item.finding.target, verified):
            excepted[name].append(_redacted(excepted_json(item)))
    for exception in report.unused_exceptions:
        for name in _owners(exception.target, verified):
            unused[name] += 1
    at = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    return [
        EnvironmentResult(
            environment=name,
            at=at,
            commit=commit,
            dirty=dirty,
            services=tuple(sorted(set(services))),
            targets=sum(1 for target in report.targets if target.environment == name),
            failing=tuple(failing[name]),
            excepted=tuple(excepted[name]),
            unused_exceptions=unused[name],
            # the stacks' warnings are the run's (the support calendar), not one target's
            warnings=len(report.warnings),
        )
        for name in verified
    ]


def checkout_state(root: Path) -> tuple[str | None, bool]:
    """(HEAD, whether the working tree differs from it); (None, False) without git or a
    first commit: the record then says so instead of failing the run."""
    git = Git(root)
    try:
        if not git.ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
            return None, False
        changes = git.run("--no-optional-locks", "status", "--porcelain")
        return git.head(), bool(changes.strip())
    except PlatformError:
        return None, False


def _checkouts(root: Path) -> dict[str, Any]:
    return read_cache(record_path(root), RECORD_FORMAT)


def last_results(root: Path) -> dict[str, EnvironmentResult]:
    """The recorded result of each environment of the checkout at ``root`` (none recorded,
    or a record that cannot be read: empty)."""
    entries = _checkouts(root).get(str(root.resolve()))
    if not isinstance(entries, dict):
        return {}
    results = {name: EnvironmentResult.from_json(name, data) for name, data in entries.items()}
    return {name: result for name, result in results.items() if result is not None}


def record(
    root: Path,
    report: VerifyReport,
    environment_order: Iterable[str],
    services: Sequence[str],
    *,
    now: dt.datetime | None = None,
) -> None:
    """Write ``report`` as the last result of each environment it verified; the others keep
    theirs. Never raises for a folder that cannot be written (the cache is advisory)."""
    commit, dirty = checkout_state(root)
    results = results_of(
        report,
        environment_order,
        services,
        commit=commit,
        dirty=dirty,
        now=now or dt.datetime.now(dt.UTC),
    )
    key = str(root.resolve())
    with _serialized(record_path(root)):
        checkouts = _checkouts(root)
        mine = checkouts.pop(key, None)
        entries = dict(mine) if isinstance(mine, dict) else {}
        entries.update({result.environment: result.as_json() for result in results})
        # this checkout last: the most recent ones are kept
        kept = [*list(checkouts.items())[-(CHECKOUTS_KEPT - 1) :], (key, entries)]
        write_cache(record_path(root), RECORD_FORMAT, dict(kept))


@contextmanager
def _serialized(path: Path) -> Iterator[None]:
    """Runs of different environments at once (CI's jobs on one runner) each keep the
    other's entry: read, merge and write under a lock. Where no lock can be had (a read-only
    folder) the write will be skipped anyway, so run unlocked."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.with_name(f".{path.name}.lock").open("w")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
