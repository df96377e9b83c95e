"""Policy exceptions: one file, each entry with check, target, reason and expiry date.

An expired exception is itself a violation (``PLAT900``): accepted risk has to be re-accepted.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from platformctl.documents import KnownValid, validator_for
from platformctl.errors import InputError
from platformctl.policy.findings import Finding
from platformctl.yamlio import display_path, located

EXPIRED_CHECK = "PLAT900"
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
        """``target`` is ``env/service`` or ``env/service/Kind/name``; '*' matches one part."""
        if not fnmatchcase(finding.check, self.check):
            return False
        wanted = self.target.split("/")
        actual = [*finding.target.split("/"), *finding.resource.split("/", 1)]
        return len(wanted) <= len(actual) and all(
            fnmatchcase(part, pattern) for part, pattern in zip(actual, wanted, strict=False)
        )

    def expired(self, today: dt.date) -> bool:
        return self.expires < today


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
        if len(target.split("/")) not in (2, 4):
            raise InputError(
                f"{located(path, ['exceptions', index, 'target'])}: target '{target}' must be "
                "env/service or env/service/Kind/name"
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
