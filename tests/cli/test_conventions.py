"""What users of gh, kubectl and uv expect of a CLI: ``-h``, ``--version``, completion, help
on every option and argument, and examples in every command's help that really parse."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from platformctl.cli import app
from platformctl.cli.examples import EXAMPLES
from platformctl.model import load_repo
from tests.conftest import PLATFORM_BINARY, run_platform

ROOT = typer.main.get_command(app)


def commands(group: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every leaf command as ("ci comment", command)."""
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(commands())


def test_every_command_has_examples_and_every_example_is_listed() -> None:
    assert set(EXAMPLES) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_and_argument_has_help(name: str) -> None:
    missing = [p.name for p in COMMANDS[name].params if not getattr(p, "help", None)]
    assert missing == [], f"platform {name}: no help for {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_examples_parse_as_that_command(name: str) -> None:
    """An example with a misspelt option or a missing required one fails here, not on a user."""
    for _, line in EXAMPLES[name]:
        words = shlex.split(line)
        assert words[0] == "platform"
        path = name.split()
        assert words[1 : 1 + len(path)] == path, line
        command = COMMANDS[name]
        command.make_context(f"platform {name}", words[1 + len(path) :])  # raises on bad usage


@pytest.mark.parametrize("name", ["", *sorted(COMMANDS)])
def test_dash_h_is_help_and_shows_the_examples(name: str) -> None:
    runner = CliRunner()
    short = runner.invoke(app, [*name.split(), "-h"], env={"NO_COLOR": "1"})
    long = runner.invoke(app, [*name.split(), "--help"], env={"NO_COLOR": "1"})
    assert short.exit_code == 0, short.output
    assert short.output == long.output
    if name:
        assert "Examples" in short.output


def test_version_is_the_installed_distribution(tmp_path: Path) -> None:
    result = run_platform(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"platform {version('platformctl')}\n"
    assert run_platform(tmp_path, "-V").stdout == result.stdout


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """The script ``--show-completion`` prints, loaded into bash, completes as a user's Tab."""
    script = f"""
        eval "$('{PLATFORM_BINARY}' --show-completion)"
        for words in "platform pro" "platform promote --t"; do
            COMP_WORDS=($words); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
            _platform_completion '{PLATFORM_BINARY}'; echo "${{COMPREPLY[*]}}"
        done
    """
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["promote", "--to"], result.stderr


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("no-such,other", ["--override no-such: no such gate"]),
        ("policy", ["cannot be overridden", "policy-exceptions.yaml"]),
    ],
    ids=["comma-separated", "policy"],
)
def test_override_names_gates_comma_separated_and_never_policy(
    repo: Path, cli: Any, override: str, said: list[str]
) -> None:
    model = load_repo(repo)
    service, target = model.services[0], model.environments[1].name
    args = ("promote", service, "--to", target, "--dry-run", "--reason", "r")
    result = cli(repo, *args, "--override", override)
    assert result.exit_code == 2
    for text in said:
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("status", "-e", "no-such-env", "-o", "json"), 2),
        (("status", "--output=JSON", "--bogus"), 2),
        (("history", "no-such-service", "-e", "x", "--output", "json"), 2),
    ],
    ids=["unknown-environment", "usage-error", "unknown-service"],
)
def test_with_json_output_an_error_is_json_on_stdout_too(
    repo: Path, args: tuple[str, ...], code: int
) -> None:
    result = run_platform(repo, *args)
    assert result.returncode == code
    [line] = result.stderr.splitlines()
    assert json.loads(result.stdout) == {"error": line.removeprefix("error: "), "exit_code": code}


def test_without_json_output_an_error_leaves_stdout_empty(repo: Path) -> None:
    result = run_platform(repo, "status", "-e", "no-such-env")
    assert result.returncode == 2
    assert result.stdout == ""


def test_a_refusal_reported_as_json_is_one_document(repo: Path) -> None:
    """promote prints its report, which carries the error; no second object follows."""
    model = load_repo(repo)
    service = model.services[0]
    first, last = model.environments[0].name, model.environments[-1].name
    result = run_platform(repo, "promote", service, "--from", last, "--to", first, "-o", "json")
    assert result.returncode in (1, 2), result.stderr
    payload = json.loads(result.stdout)
    assert payload["error"]


def test_verify_says_how_long_it_took(repo: Path, cli: Any) -> None:
    model = load_repo(repo)
    env, service = model.environments[0].name, model.services[0]
    result = cli(repo, "verify", "-e", env, "-s", service)
    assert result.exit_code == 0, result.output
    assert re.search(r"targets verified .* in \d+\.\d s$", result.stdout.strip())


def test_progress_rewrites_one_line_and_erases_it(capsys: pytest.CaptureFixture[str]) -> None:
    from platformctl.cli.verify_cmd import _progress

    for done in range(4):
        _progress("render", done, 3)
    err = capsys.readouterr().err
    assert err.split("\r")[1:] == [
        "\x1b[Krendering 0/3",
        "\x1b[Krendering 1/3",
        "\x1b[Krendering 2/3",
        "\x1b[K",
    ]
