"""Policy exceptions: one file, each entry with check, target, reason and expiry date.

An expired exception is itself a violation (``PLAT900``): accepted risk has to be re-accepted.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from platformctl.documents import KnownValid, validator_for
from platformctl.errors import InputError
from platformctl.policy.findings import Finding
from platformctl.render import ADDONS_TARGET
from platformctl.yamlio import display_path, located

EXPIRED_CHECK = "PLAT900"
# what makes a pattern of fnmatch more than a name
_GLOB = frozenset("*?[")
_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "exceptions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["check", "target", "reason", "expires"],
                "properties": {
                    "check": {"type": "string", "pattern": r"^[A-Z0-9_]+$"},
                    "target": {"type": "string", "minLength": 3},
                    "reason": {"type": "string", "minLength": 10},
                    "expires": {},
                },
            },
        }
    },
}
_SCHEMA_TEXT = json.dumps(_SCHEMA, sort_keys=True)


@dataclass(frozen=True)
class PolicyException:
    check: str
    target: str
    reason: str
    expires: dt.date
    path: Path
    index: int

    @property
    def where(self) -> str:
        """``file:line`` of the entry, found only when a message needs it (each lookup parses
        the file again)."""
        return located(self.path, ["exceptions", self.index])

    def matches(self, finding: Finding) -> bool:
        """``target`` is ``env/service`` or ``env/service/Kind/name`` (an add-on chart's service
        is ``addons/<add-on>``); '*' matches one part."""
        if not fnmatchcase(finding.check, self.check):
            return False
        wanted = self.target.split("/")
        actual = [*finding.target.split("/"), *finding.resource.split("/", 1)]
        return len(wanted) <= len(actual) and all(
            fnmatchcase(part, pattern) for part, pattern in zip(actual, wanted, strict=False)
        )

    def covers(self, key: str) -> bool:
        """Whether the target ``key`` (``env/service``) is one this exception's target names:
        only a verified target can show that an exception is no longer needed."""
        actual = key.split("/")
        return all(
            fnmatchcase(part, pattern)
            for part, pattern in zip(actual, self.target.split("/"), strict=False)
        )

    def expired(self, today: dt.date) -> bool:
        return self.expires < today


def _well_formed(target: str) -> bool:
    """``env/service[/Kind/name]``; an add-on chart's targets are ``env/addons/<add-on>``, so
    they take one part more (``env/addons/Kind/name`` stays the add-ons chart's own object)."""
    parts = target.split("/")
    return len(parts) in (2, 4) or (len(parts) in (3, 5) and parts[1] == ADDONS_TARGET)


def load_exceptions(path: Path, root: Path | None = None) -> list[PolicyException]:
    """The exceptions in ``path``, schema-checked unless this text is known valid in ``root``'s
    cache (as the model's files are: a promotion's policy gate then never imports jsonschema)."""
    if not path.is_file():
        return []
    known = KnownValid(root)
    data = known.read(path, _SCHEMA_TEXT, lambda: validator_for(_SCHEMA))
    known.save()
    exceptions = []
    for index, entry in enumerate(data.get("exceptions") or []):
        expires = entry["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                expires = None
        if not isinstance(expires, dt.date):
            raise InputError(
                f"{located(path, ['exceptions', index, 'expires'])}: expires: "
                "not a date (use YYYY-MM-DD)"
            )
        target = entry["target"]
        if not _well_formed(target):
            raise InputError(
                f"{located(path, ['exceptions', index, 'target'])}: target '{target}' must be "
                "env/service or env/service/Kind/name (an add-on's chart: "
                f"env/{ADDONS_TARGET}/<add-on>[/Kind/name])"
            )
        exceptions.append(
            PolicyException(
                check=entry["check"],
                target=target,
                reason=entry["reason"],
                expires=expires,
                path=path,
                index=index,
            )
        )
    return exceptions


@dataclass(frozen=True)
class Excepted:
    finding: Finding
    exception: PolicyException


def apply_exceptions(
    findings: list[Finding], exceptions: list[PolicyException], today: dt.date, path: Path
) -> tuple[list[Finding], list[Excepted], list[PolicyException]]:
    """Split findings into (still failing, excepted); also return exceptions that matched none.

    Expired exceptions except nothing and each becomes a finding of its own.
    """
    failing: list[Finding] = []
    excepted: list[Excepted] = []
    used: set[int] = set()
    live = [e for e in exceptions if not e.expired(today)]
    for finding in findings:
        match = next((e for e in live if e.matches(finding)), None)
        if match is None:
            failing.append(finding)
        else:
            excepted.append(Excepted(finding, match))
            used.add(id(match))
    for exception in exceptions:
        if exception.expired(today):
            failing.append(
                Finding(
                    target=exception.target,
                    check=EXPIRED_CHECK,
                    resource=display_path(path),
                    message=f"exception for {exception.check} expired on "
                    f"{exception.expires.isoformat()} ({exception.where}): renew it with a "
                    "new reason or fix the finding",
                    engine="project",
                )
            )
    unused = [e for e in live if id(e) not in used]
    return failing, excepted, unused


@dataclass(frozen=True)
class UnusedException:
    """A live exception that excepted nothing, with why: what to fix differs by cause."""

    exception: PolicyException
    why: str
    # everything it names exists; the check just no longer fires there
    stale: bool = False

    @property
    def check(self) -> str:
        return self.exception.check

    @property
    def target(self) -> str:
        return self.exception.target

    @property
    def where(self) -> str:
        """``file:line: why``: printed before "matches nothing", so the cause comes first."""
        return f"{self.exception.where}: {self.why}"


def _hint(name: str, known: Collection[str]) -> str:
    """The closest known name: a typo of one or two characters first (``PLAT0O1`` is
    PLAT001, not PLAT019), else the most similar."""

    def typos(other: str) -> int:
        return sum(a != b for a, b in zip(name, other, strict=True))

    same = sorted((typos(k), k) for k in known if len(k) == len(name) and typos(k) <= 2)
    close = [same[0][1]] if same else difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _matching(pattern: str, names: Collection[str]) -> list[str]:
    if not _GLOB.intersection(pattern):  # most patterns are names: a lookup, not ~1,000 matches
        return [pattern] if pattern in names else []
    return [name for name in names if fnmatchcase(name, pattern)]


def why_unused(
    exception: PolicyException,
    checks: Collection[str],
    replaced: Mapping[str, str],
    targets: Collection[str],
) -> UnusedException:
    """The exception with why it matched no finding: its check id or its target names nothing that
    exists (with the closest name), or the check no longer fires there (it can go).

    ``checks`` are the ids any engine can report, ``replaced`` the checkov ids the project's
    rules stand in for, ``targets`` every ``env/service`` (and ``env/addons/<add-on>``) the
    repository renders.
    """
    check, parts = exception.check, exception.target.split("/")
    if check in replaced:
        return UnusedException(
            exception, f"check {check} is not run: {replaced[check]} replaces it"
        )
    if not _matching(check, checks):
        return UnusedException(exception, f"check {check} does not exist{_hint(check, checks)}")
    split = [target.split("/", 1) for target in targets]
    environments = {env for env, _ in split}
    if not _matching(parts[0], environments):
        return UnusedException(
            exception, f"environment '{parts[0]}' does not exist{_hint(parts[0], environments)}"
        )
    matched = set(_matching(parts[0], environments))
    names = {name for env, name in split if env in matched}
    addon = len(parts) in (3, 5) and parts[1] == ADDONS_TARGET
    if addon:
        addons = {n.split("/", 1)[1] for n in names if n.startswith(f"{ADDONS_TARGET}/")}
        if not _matching(parts[2], addons):
            return UnusedException(
                exception,
                f"add-on '{parts[2]}' does not exist in {parts[0]}{_hint(parts[2], addons)}",
            )
    else:
        services = {n for n in names if not n.startswith(f"{ADDONS_TARGET}/")}
        if not _matching(parts[1], services):
            return UnusedException(
                exception,
                f"service '{parts[1]}' does not exist in {parts[0]}{_hint(parts[1], services)}",
            )
    return UnusedException(exception, f"{check} no longer fires on {exception.target}", stale=True)
