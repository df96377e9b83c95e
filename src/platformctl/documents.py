"""JSON-schema checks of YAML documents, reported as ``file:line: key: reason``.

jsonschema is imported only when a document is actually checked: ``KnownValid`` remembers
which (schema, file text) pairs passed, so a command on an unchanged repository reads its
files without importing or running the validator (~0.25 s on a fleet of 100 services). It
also keeps what each file text parsed to, as JSON, which reads several times faster than the
YAML (the model reads 400 files on a fleet of 100 services).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformctl.cachefile import cache_dir, read_cache, survives_json, write_cache
from platformctl.errors import InputError
from platformctl.yamlio import located, mapping_of, read_text

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

VALID_FILE = "valid.json"
# Enough for every file of a large repository, a few versions each.
VALID_LIMIT = 10_000
PARSED_FILE = "parsed.json"
# Every file of a large repository and the versions its last commands wrote.
PARSED_LIMIT = 4_000


@cache
def _parsed_fingerprint() -> str:
    """What a file text parses to depends on the YAML library and the loader of yamlio."""
    loader = Path(__file__).with_name("yamlio.py").read_bytes()
    return hashlib.sha256(version("PyYAML").encode() + b"\0" + loader).hexdigest()


@cache
def packaged_schema_text(name: str) -> str:
    """A schema shipped inside the package (``schemas/<name>.schema.json``), as text."""
    return resources.files("platformctl").joinpath(f"schemas/{name}.schema.json").read_text()


@cache
def packaged_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(packaged_schema_text(name))
    return schema


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def without_required(schema: Any) -> Any:
    """The schema minus every ``required``: checks one layer of values that is merged later."""
    if isinstance(schema, dict):
        return {k: without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [without_required(item) for item in schema]
    return schema


def key_text(key_path: Sequence[str | int]) -> str:
    """A key path as users read it: dotted keys, a list item as ``<list> #<n>`` counted from 1
    (``containers #1.image``), the convention of every message that names a position."""
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f" #{part + 1}"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


_TYPES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "an empty value",
}
# What people write for a binary quantity: 128MB, 1GB, 512mb, 1Gb, 64KB -> 128Mi, 1Gi, ...
_BYTES = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT])(?:i?[bB]|i)\s*$")


def _kind_of(value: Any) -> str:
    """What a YAML value is, in words (``None`` is a key left empty)."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping"


def shown(value: Any) -> str:
    """A value as it is quoted in a message."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)


def _one_of(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _quantity_hint(value: Any) -> str:
    """A did-you-mean for a decimal-looking byte unit (Kubernetes' MB is not a megabyte)."""
    match = _BYTES.match(str(value))
    if match is None:
        return ""
    unit = match[2].upper() + "i"
    return f"; did you mean {match[1]}{unit}?"


def _enum_reason(value: Any, allowed: list[Any]) -> str:
    words = [shown(item) for item in allowed]
    close = difflib.get_close_matches(str(value), [str(item) for item in allowed], n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close and value is not None else ""
    return f"{shown(value)} is not one of {_one_of(words)}{hint}"


def reason(error: ValidationError) -> str:
    """The reason of one schema error in words: what the value is not, never a regex."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    value, kind = error.instance, error.validator
    title = schema.get("title")
    limit: Any = error.validator_value
    if kind == "type":
        wanted = [limit] if isinstance(limit, str) else list(limit)
        expected = _one_of([_TYPES.get(name, name) for name in wanted])
        return f"expected {expected}, got {_kind_of(value)}"
    if kind in ("pattern", "maxLength", "format", "minimum", "maximum") and title:
        hint = _quantity_hint(value) if "quantity" in title else ""
        return f"{shown(value)} is not {title}{hint}"
    if kind == "pattern":
        about = schema.get("description")
        return f"{shown(value)} is not in the form this key takes" + (
            f" ({about})" if about else ""
        )
    if kind == "enum":
        return _enum_reason(value, list(limit))
    if kind == "const":
        return f"{shown(value)} is not {shown(limit)}"
    if kind == "required":
        missing = [key for key in limit if isinstance(value, dict) and key not in value]
        return f"missing key '{missing[0] if missing else limit[0]}'"
    bounds = {
        "minimum": f"is below the minimum of {limit}",
        "maximum": f"is above the maximum of {limit}",
        "exclusiveMinimum": f"must be more than {limit}",
        "exclusiveMaximum": f"must be less than {limit}",
        "minLength": f"is shorter than {limit} character(s)",
        "maxLength": f"is longer than {limit} characters",
        "minItems": "needs at least one item" if limit == 1 else f"needs at least {limit} items",
        "maxItems": f"has more than {limit} item(s)",
    }
    if kind in bounds:
        return f"{shown(value)} {bounds[kind]}"
    return error.message


def describe(error: ValidationError) -> tuple[list[str | int], str]:
    """Key path and reason of a schema error, naming an unknown key itself (with a hint)."""
    key_path: list[str | int] = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return [*key_path, key], f"unknown key '{key}'{hint}"
    return key_path, reason(error)


def schema_error(data: Any, validator: Draft202012Validator) -> tuple[list[str | int], str] | None:
    """Key path and reason, in words, of the error that best explains why ``data`` fails."""
    from jsonschema.exceptions import best_match

    error: ValidationError | None = best_match(validator.iter_errors(data))
    return None if error is None else describe(error)


def check_document(data: Any, validator: Draft202012Validator, path: Path) -> None:
    """Raise an InputError naming ``file:line``, the key and the reason of the first error."""
    found = schema_error(data, validator)
    if found is None:
        return
    key_path, reason = found
    raise InputError(f"{located(path, key_path)}: {key_text(key_path)}: {reason}")


# The files' entries as last read by this process, with the stat they were read at: a command
# makes several KnownValid (the model, the files a promotion edits, the exceptions) and each
# would decode the same JSON again. The entries are immutable (1, or a JSON text) and
# content-addressed, so an entry is true whichever version of the file it came from.
_READ: dict[tuple[Path, str], tuple[tuple[int, int, int], dict[str, Any]]] = {}


def _read_once(path: Path | None, fingerprint: str) -> dict[str, Any]:
    """``read_cache``, decoding each version of the file once per process (a copy each time)."""
    if path is None:
        return {}
    try:
        stat = path.stat()
    except OSError:
        return {}
    version_ = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    known = _READ.get((path, fingerprint))
    if known is None or known[0] != version_:
        known = (version_, read_cache(path, fingerprint))
        _READ[(path, fingerprint)] = known
    return dict(known[1])


@cache
def _schema_digest(schema_text: str) -> str:
    """A schema's hash, once per process: hashing the schema with each file (the values
    schema is ~40 times a values file) was most of reading a fleet's values."""
    return hashlib.sha256(schema_text.encode()).hexdigest()


class KnownValid:
    """The (schema, file text) pairs that passed their schema, kept in ``.platform-cache/``."""

    def __init__(self, root: Path | None) -> None:
        self.path = cache_dir(root) / VALID_FILE if root else None
        self.fingerprint = version("jsonschema")
        self.entries = _read_once(self.path, self.fingerprint)
        self.added = False
        self.parsed_path = cache_dir(root) / PARSED_FILE if root else None
        self.parsed = _read_once(self.parsed_path, _parsed_fingerprint())
        self.parsed_used: list[str] = []
        self.parsed_added = False

    def mapping(self, path: Path, text: str) -> dict[str, Any]:
        """``mapping_of(text, path)``, from the cache when this text was parsed before (each
        read decodes its own copy: callers may change what they get)."""
        key = hashlib.sha256(text.encode()).hexdigest()
        stored = self.parsed.get(key)
        if isinstance(stored, str):
            self.parsed_used.append(key)
            data: dict[str, Any] = json.loads(stored)
            return data
        data = mapping_of(text, path)
        if survives_json(data):
            self.parsed[key] = json.dumps(data)
            self.parsed_used.append(key)
            self.parsed_added = True
        return data

    def read(
        self,
        path: Path,
        schema_text: str,
        validator: Callable[[], Draft202012Validator],
        text: str | None = None,
    ) -> dict[str, Any]:
        """The mapping in ``path`` (or ``text``, what it is about to hold), checked against the
        schema unless known valid."""
        text = read_text(path) if text is None else text
        data = self.mapping(path, text)
        key = hashlib.sha256(f"{_schema_digest(schema_text)}\0{text}".encode()).hexdigest()
        if key not in self.entries:
            check_document(data, validator(), path)
            self.entries[key] = 1
            self.added = True
        return data

    def save(self) -> None:
        if self.path is not None and self.added:
            keys = list(self.entries)[-VALID_LIMIT:]
            write_cache(self.path, self.fingerprint, dict.fromkeys(keys, 1))
        if self.parsed_path is not None and self.parsed_added:
            used = set(self.parsed_used)
            # the texts this run read last, so the limit drops the longest unused
            keys = [k for k in self.parsed if k not in used] + list(dict.fromkeys(self.parsed_used))
            entries = {key: self.parsed[key] for key in keys[-PARSED_LIMIT:]}
            write_cache(self.parsed_path, _parsed_fingerprint(), entries)
