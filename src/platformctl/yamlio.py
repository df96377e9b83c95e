"""YAML reading for the model, with file:line in every error.

Reading uses libyaml's C loader (the fast path for hundreds of files); only when something is
wrong is the file parsed again with ruamel to find the line of the offending key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from platformctl.errors import InputError

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def display_path(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_yaml(text: str, path: Path) -> Any:
    """Parse one YAML document; malformed input becomes an InputError naming file:line."""
    try:
        return yaml.load(text, Loader=_Loader)  # CSafeLoader: the safe loader, in C
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(
            f"{display_path(path)}{line}: malformed YAML: {error.problem or error}",
            hint="fix the syntax and run again",
        ) from error
    except yaml.YAMLError as error:
        raise InputError(f"{display_path(path)}: malformed YAML: {error}") from error


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"{display_path(path)}: file not found") from error


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level must be a mapping (an empty file is an empty mapping)."""
    return mapping_of(read_text(path), path)


def mapping_of(text: str, path: Path) -> dict[str, Any]:
    data = parse_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{display_path(path)}:1: expected a mapping at the top level")
    return data


def line_of(path: Path, key_path: Sequence[str | int]) -> int | None:
    """The 1-based line of ``key_path`` in ``path`` (the deepest part that exists)."""
    # only errors need lines: ruamel (~0.1 s to import) is loaded for them alone
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        node: Any = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except (OSError, MarkedYAMLError):
        return None
    line: int | None = 1
    for key in key_path:
        try:
            position = node.lc.key(key) if isinstance(key, str) else node.lc.item(key)
            node = node[key]
        except (AttributeError, KeyError, IndexError, TypeError):
            break
        line = position[0] + 1
    return line


def located(path: Path, key_path: Sequence[str | int]) -> str:
    """``file:line`` for a key, for error messages."""
    line = line_of(path, key_path)
    return f"{display_path(path)}:{line}" if line else display_path(path)
