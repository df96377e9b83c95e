"""The stack settings as the Pulumi engine hands them to the program: each ``platform:*`` key
of the stack schema read through ``pulumi.Config``, decoded, and checked by the repo model's
``platformctl.stacks`` (the same code ``platform verify`` runs on the stack files)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi

from platformctl.documents import packaged_schema
from platformctl.errors import PlatformError
from platformctl.model import Repo
from platformctl.stacks import StackSettings, deployment_blockers, load_settings, stack_file


def decode_engine_config(raw: Mapping[str, str]) -> dict[str, Any]:
    """The engine hands objects, lists and booleans to the program as JSON text; strings stay
    as they are (a version such as "17.4" is not turned into a number)."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        decoded[key] = value
        if isinstance(value, str) and (value[:1] in ("{", "[") or value in ("true", "false")):
            with contextlib.suppress(json.JSONDecodeError):
                decoded[key] = json.loads(value)
    return decoded


def engine_settings(repo: Repo, stack: str) -> StackSettings:
    """The settings of the stack being deployed, read through the engine's config.

    A bad value stops the program before any resource is declared, with the one-line message
    (``pulumi.RunError`` prints no traceback).
    """
    schema_keys = packaged_schema("stack")["properties"]["config"]["properties"]
    raw: dict[str, str] = {}
    for key in schema_keys:
        namespace, _, name = key.partition(":")
        value = pulumi.Config(namespace).get(name)
        if value is not None:
            raw[key] = value
    try:
        settings = load_settings(
            stack, decode_engine_config(raw), repo, stack_file(repo.root, stack)
        )
    except PlatformError as error:
        raise pulumi.RunError(str(error)) from None
    blockers = deployment_blockers(settings)
    if blockers:
        raise pulumi.RunError("; ".join(blockers))
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    return settings
