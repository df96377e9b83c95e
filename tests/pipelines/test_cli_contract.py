"""Every `platform` subcommand and flag the pipelines call exists: parse them, ask the CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer import _click as click

from platformctl.cli import app

ROOT = Path(__file__).resolve().parents[2]
INVOCATION = re.compile(r"(?:^|[\s;|&(])platform\s+([a-z][a-z-]*)((?:\s+[a-z][a-z-]*)?)(.*)$")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
ARRAY_USE = re.compile(r"\$\{(\w+)\[@\]\}")


def _sources() -> list[Path]:
    scripts = [p for p in (ROOT / "pipelines").iterdir() if p.is_file()]
    return [
        *scripts,
        *(ROOT / ".github" / "workflows").glob("*.yml"),
        ROOT / ".pre-commit-config.yaml",
    ]


def _lines(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def _array_flags(lines: list[str], name: str) -> set[str]:
    assignment = re.compile(rf"\b{name}\+?=\(([^)]*)\)")
    return {
        flag for line in lines for body in assignment.findall(line) for flag in FLAG.findall(body)
    }


def invocations(sources: list[Path] | None = None) -> list[tuple[str, tuple[str, ...], set[str]]]:
    """(where, command path, flags) of every `platform ...` call in the pipelines."""
    found = []
    for path in sources or _sources():
        lines = _lines(path)
        for number, line in enumerate(lines, 1):
            match = INVOCATION.search(line)
            if not match:
                continue
            command, maybe_sub, rest = match[1], match[2].strip(), match[3]
            flags = set(FLAG.findall(rest))
            for array in ARRAY_USE.findall(rest):
                flags |= _array_flags(lines, array)
            words = (command, maybe_sub) if maybe_sub else (command,)
            found.append((f"{path.name}:{number}", words, flags))
    return found


def _resolve(words: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for word in words:
        if not hasattr(command, "get_command"):  # a command, not a group: the rest is its args
            break
        sub = command.get_command(click.Context(command), word)
        assert sub is not None, f"platform has no command '{' '.join(words)}'"
        command = sub
    return command


def unknown_flags(calls: list[tuple[str, tuple[str, ...], set[str]]]) -> list[str]:
    problems = []
    for where, words, flags in calls:
        command = _resolve(words)
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        problems += [
            f"{where}: platform {' '.join(words)} {flag}" for flag in sorted(flags - known)
        ]
    return problems


def test_every_called_command_and_flag_exists() -> None:
    calls = invocations()
    called = {words[0] if words[0] != "ci" else " ".join(words) for _, words, _ in calls}
    assert {"verify", "promote", "rollback", "status", "ci comment", "ci issue"} <= called
    assert unknown_flags(calls) == []


def test_the_parser_sees_flags_passed_through_arrays() -> None:
    promote = [flags for where, words, flags in invocations() if words == ("promote",)]
    assert promote
    assert {"--pull-request", "--dry-run", "--to", "--reason", "--all"} <= promote[0]


def test_a_flag_or_command_that_does_not_exist_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "release"
    script.write_text('mode=(--push --wiat)\nplatform rollback --all --env dev "${mode[@]}"\n')
    assert unknown_flags(invocations([script])) == ["release:2: platform rollback --wiat"]
    script.write_text("platform rolback --all\n")
    with pytest.raises(AssertionError, match="no command 'rolback'"):
        unknown_flags(invocations([script]))
