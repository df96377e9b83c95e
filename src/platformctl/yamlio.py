"""YAML reading for the model, with file:line in every error.

Reading uses libyaml's C loader (the fast path for hundreds of files); only when something is
wrong is the file parsed again with ruamel to find the line of the offending key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from platformctl.errors import EnvironmentProblem, InputError

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A values file has hundreds of nodes; anchors and aliases may share some, but a document that
# expands past this many nodes is an alias bomb (a billion laughs), refused before it is built.
MAX_NODES = 100_000


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping names one key twice (YAML says keys are unique; libyaml keeps the last)."""

    def __init__(self, key: str, first: int, mark: yaml.Mark) -> None:
        super().__init__(problem=f"duplicate key '{key}'", problem_mark=mark)
        self.key, self.first, self.line = key, first, mark.line + 1


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """libyaml's safe loader, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            first = seen.setdefault((key.tag, key.value), key.start_mark.line)
            if first != key.start_mark.line:
                raise DuplicateKey(key.value, first + 1, key.start_mark)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in the document with every alias expanded (memoized: linear in the graph)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_NODES + 1  # a node inside itself (a recursive alias) is too big
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    size = 1
    for child in children:
        size += _expanded_size(child, sizes)
        if size > MAX_NODES:
            break
    sizes[id(node)] = size
    return size


def display_path(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(_resolved(os.getcwd())))
    except ValueError:
        return str(path)


@lru_cache(maxsize=8)
def _resolved(folder: str) -> Path:
    """The working directory resolved once per process (every verify target names its files)."""
    return Path(folder).resolve()


def parse_yaml(text: str, path: Path) -> Any:
    """Parse one YAML document; malformed input becomes an InputError naming file:line.

    Keys must be unique, and aliases may not expand the document past ``MAX_NODES``.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "&" in text and _expanded_size(node, {}) > MAX_NODES:
            raise InputError(
                f"{display_path(path)}: aliases expand to more than {MAX_NODES:,} nodes",
                hint="write the values out instead of nesting aliases",
            )
        return loader.construct_document(node)
    except DuplicateKey as error:
        where = display_path(path)
        raise InputError(
            f"{where}:{error.line}: duplicate key '{error.key}' (also at {where}:{error.first})",
            hint="keep one of them",
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(
            f"{display_path(path)}{line}: malformed YAML: {error.problem or error}",
            hint="fix the syntax and run again",
        ) from None
    except yaml.YAMLError as error:
        raise InputError(f"{display_path(path)}: malformed YAML: {error}") from None
    except RecursionError:
        raise InputError(f"{display_path(path)}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"{display_path(path)}: file not found") from error
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise InputError(
            f"{display_path(path)}:{line}: not UTF-8 text (byte 0x{error.object[error.start]:02x})",
            hint="save the file as UTF-8",
        ) from None
    except OSError as error:
        raise EnvironmentProblem(f"{display_path(path)}: cannot read ({error.strerror})") from None


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
