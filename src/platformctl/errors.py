"""One error type per exit code, so every command maps failures the same way.

Commands never call ``sys.exit`` themselves: they raise one of these and the CLI prints the
one-line message (a traceback only with ``--debug``) and exits with ``exit_code``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    ENVIRONMENT = 3
    # the commit is pushed, but --wait did not see it Synced and Healthy
    WAIT_FAILED = 4
    # a bug: an exception nobody expected (sysexits' EX_SOFTWARE)
    INTERNAL = 70
    INTERRUPTED = 130


# userinfo of a URL (https://user:token@host): a credential, never printed or posted
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
# a message longer than this is cut: an error is one readable line, never megabytes
MESSAGE_LIMIT = 400


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one bounded line with credentials redacted (for errors and warnings)."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class PlatformError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code: ExitCode = ExitCode.USAGE
    # Set when the command already printed its JSON report, which carries this error.
    in_json_report: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return one_line(f"{self.message} ({self.hint})" if self.hint else self.message)


class InputError(PlatformError):
    """Bad usage or bad input (a name, a file, a value): exit 2."""

    exit_code = ExitCode.USAGE


class RefusedError(PlatformError):
    """A gate, policy or hold refused the operation: exit 1."""

    exit_code = ExitCode.REFUSED


class EnvironmentProblem(PlatformError):
    """The machine is not fit to run the command (git, network, a missing tool): exit 3."""

    exit_code = ExitCode.ENVIRONMENT


# How many known names an error lists before it points elsewhere.
LISTED_NAMES = 8


def unknown_name(kind: str, name: str, known: Iterable[str]) -> InputError:
    """An 'unknown X' error that suggests the closest known name."""
    choices = sorted(known)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        hint = f"did you mean '{close[0]}'?"
    elif len(choices) > LISTED_NAMES:
        # a fleet of a hundred services is not a hint: say where to look instead
        shown = ", ".join(choices[:LISTED_NAMES])
        hint = f"known: {shown} and {len(choices) - LISTED_NAMES} more: see `platform status`"
    else:
        hint = "known: " + (", ".join(choices) if choices else "none")
    return InputError(f"unknown {kind} '{name}'", hint=hint)
