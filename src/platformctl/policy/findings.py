"""What every policy engine reports, so the gate can merge, except and print them alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Finding:
    """One violation: a check that failed on one resource of one target (``env/service``)."""

    target: str
    check: str
    resource: str
    message: str
    engine: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
