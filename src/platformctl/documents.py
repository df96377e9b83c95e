"""JSON-schema checks of YAML documents, reported as ``file:line: key: reason``."""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from platformctl.errors import InputError
from platformctl.yamlio import located


@cache
def packaged_schema(name: str) -> dict[str, Any]:
    """A schema shipped inside the package (``schemas/<name>.schema.json``)."""
    text = resources.files("platformctl").joinpath(f"schemas/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def without_required(schema: Any) -> Any:
    """The schema minus every ``required``: checks one layer of values that is merged later."""
    if isinstance(schema, dict):
        return {k: without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [without_required(item) for item in schema]
    return schema


def _describe(error: ValidationError) -> tuple[list[str | int], str]:
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
    return key_path, error.message


def check_document(data: Any, validator: Draft202012Validator, path: Path) -> None:
    """Raise an InputError naming ``file:line``, the key and the reason of the first error."""
    error: ValidationError | None = best_match(validator.iter_errors(data))
    if error is None:
        return
    key_path, reason = _describe(error)
    where = located(path, key_path)
    key = ".".join(str(part) for part in key_path) or "(top level)"
    raise InputError(f"{where}: {key}: {reason}")
