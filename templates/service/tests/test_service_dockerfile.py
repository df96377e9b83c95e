"""The Dockerfile, read with dockerfile-parse (no Docker engine here; the image is built by the
service's CI): stages, pins, the final stage's contents, the user and the command."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).parents[1]
PINNED = re.compile(r"(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[dict[str, Any]]

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def stages(dockerfile: DockerfileParser) -> list[Stage]:
    found: list[Stage] = []
    for instruction in dockerfile.structure:
        if instruction["instruction"] == "FROM":
            base, _, name = instruction["value"].partition(" AS ")
            found.append(Stage(base.strip(), name.strip() or None, []))
        elif found and instruction["instruction"] != "COMMENT":
            found[-1].instructions.append(instruction)
    return found


def test_every_base_image_is_pinned_to_an_exact_version(dockerfile: DockerfileParser) -> None:
    names: set[str] = set()
    for stage in stages(dockerfile):
        if stage.base not in names:
            assert PINNED.search(stage.base), f"{stage.base}: pin an exact version or a digest"
        if stage.name:
            names.add(stage.name)


def test_the_final_stage_holds_the_built_environment_and_no_build_tools(
    dockerfile: DockerfileParser,
) -> None:
    *earlier, final = stages(dockerfile)
    [build] = [stage for stage in earlier if stage.values("RUN")]
    # the interpreter the environment was built against: its symlinks point at it
    assert final.base == build.base
    assert any("uv sync --frozen" in run for run in build.values("RUN"))
    assert any("UV_COMPILE_BYTECODE=1" in env for env in build.values("ENV"))
    # nothing is installed or run in the final stage: no package manager, compiler or uv
    assert final.values("RUN") == []
    assert final.values("COPY") == [f"--from={build.name} /app/.venv /app/.venv"]
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in final.values("ENV"))


def test_it_runs_as_the_charts_numeric_non_root_user(dockerfile: DockerfileParser) -> None:
    user = stages(dockerfile)[-1].values("USER")[-1]
    assert re.fullmatch(r"\d+:\d+", user), "numeric, so the kubelet's runAsNonRoot can check it"
    assert int(user.split(":")[0]) != 0


def test_the_command_starts_the_package_and_there_is_no_healthcheck(
    dockerfile: DockerfileParser,
) -> None:
    assert not any(i["instruction"] == "HEALTHCHECK" for i in dockerfile.structure)
    command = json.loads(dockerfile.cmd)  # exec form: the process gets SIGTERM itself
    assert command == ["python", "-m", "service_template"]
    assert (ROOT / "src/service_template/__main__.py").is_file()
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()
