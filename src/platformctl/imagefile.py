"""Changing the image of a values file and nothing else.

The edit is made on the text, at the lines ruamel locates for the ``image`` keys, so comments,
key order, quoting and layout of every other line survive byte for byte. A one-line flow
mapping (the layout this repository uses) stays one line: a promotion is a one-line diff.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from platformctl.errors import InputError
from platformctl.model import Image
from platformctl.yamlio import display_path, parse_yaml

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FLOW_LINE = re.compile(r"^(?P<indent>\s*)image:\s*\{[^#]*\}(?P<rest>\s*(#.*)?)$")


def scalar(value: str, *, quote: bool = False) -> str:
    """A YAML scalar that reads back as this exact string (quoted when it would not)."""
    if not quote:
        try:
            if yaml.load(f"k: {value}", Loader=_Loader) == {"k": value} and "," not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def flow_image(image: Image) -> str:
    parts = [f"repository: {scalar(image.repository)}"]
    if image.tag:
        parts.append(f"tag: {scalar(image.tag)}")
    if image.digest:
        parts.append(f"digest: {scalar(image.digest, quote=True)}")
    return "{" + ", ".join(parts) + "}"


def _block_edit(lines: list[str], node: Any, start: int, image: Image) -> list[str]:
    """Edit ``image:`` written as a block mapping, key by key."""
    wanted = {"repository": image.repository, "tag": image.tag, "digest": image.digest}
    indent = None
    edits: dict[int, str | None] = {}
    last_line = start
    for key in ("repository", "tag", "digest"):
        if key not in node:
            continue
        line = node.lc.key(key)[0]
        last_line = max(last_line, line)
        indent = re.match(r"\s*", lines[line])[0]  # type: ignore[index]
        value = wanted[key]
        comment = re.search(r"\s+#[^'\"]*$", lines[line].rstrip("\n"))
        suffix = comment[0] if comment else ""
        edits[line] = (
            None
            if value is None
            else f"{indent}{key}: {scalar(value, quote=key == 'digest')}{suffix}\n"
        )
    result = [edits.get(i, line) for i, line in enumerate(lines)]
    missing = [k for k in ("repository", "tag", "digest") if k not in node and wanted[k]]
    insert = [
        f"{indent or '  '}{k}: {scalar(str(wanted[k]), quote=k == 'digest')}\n" for k in missing
    ]
    result[last_line + 1 : last_line + 1] = insert
    return [line for line in result if line is not None]


def image_of(text: str) -> Image | None:
    """The image a values text declares, as the model reads it (None if it declares none)."""
    try:
        data = parse_yaml(text, path=Path("<history>"))
        raw = data.get("image") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return None
        return Image(raw.get("repository", ""), raw.get("tag") or None, raw.get("digest") or None)
    except Exception:
        return None


def with_image(text: str, image: Image) -> str | None:
    """``text`` with its top-level ``image: {...}`` line replaced, found without a YAML parser
    (ruamel costs ~0.1 s a command); None when the file is laid out otherwise.

    A line that starts in column 0 of a block mapping is a key, a comment or a document
    marker (a scalar's continuation lines are indented), so one such line is the key itself.
    The result is parsed back to make sure.
    """
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("image:")]
    if len(found) != 1 or not _FLOW_LINE.match(lines[found[0]].rstrip("\n")):
        return None
    edited = _with_flow_image(lines, found[0], image)
    return edited if image_of(edited) == image else None


def _with_flow_image(lines: list[str], start: int, image: Image) -> str:
    match = _FLOW_LINE.match(lines[start].rstrip("\n"))
    assert match is not None
    ending = "\n" if lines[start].endswith("\n") else ""
    edited = list(lines)
    edited[start] = f"{match['indent']}image: {flow_image(image)}{match['rest']}{ending}"
    return "".join(edited)


def with_first_image(text: str, image: Image) -> str:
    """``text`` with an ``image: {...}`` line added below its leading comments: the first
    promotion of a service into a stage adds one line."""
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, f"image: {flow_image(image)}\n")
    return "".join(lines)


def set_image(path: Path, image: Image) -> str:
    """The text of ``path`` with its image replaced (the file itself is not written)."""
    text = path.read_text(encoding="utf-8")
    edited = with_image(text, image)
    if edited is not None:
        return edited
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    data: Any = YAML(typ="rt").load(text)
    if isinstance(data, CommentedMap) and "image" not in data:
        return with_first_image(text, image)
    if not isinstance(data, CommentedMap) or not isinstance(data.get("image"), CommentedMap):
        raise InputError(f"{display_path(path)}: no image mapping to change")
    lines = text.splitlines(keepends=True)
    start = data.lc.key("image")[0]
    if _FLOW_LINE.match(lines[start].rstrip("\n")):
        return _with_flow_image(lines, start, image)
    return "".join(_block_edit(lines, data["image"], start, image))
