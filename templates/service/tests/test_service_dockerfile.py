"""The Dockerfile, read with dockerfile-parse (no Docker engine here; the image is built by the
service's CI): stages, pins, the final stage's contents, the user and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).parents[1]
PINNED = re.compile(r"(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def stages(dockerfile: DockerfileParser) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    for instruction in dockerfile.structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found and instruction["instruction"] != "COMMENT":
            found[-1].append(instruction)
    return found


def values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_every_base_image_is_pinned_to_an_exact_version(dockerfile: DockerfileParser) -> None:
    for image in dockerfile.parent_images:
        assert PINNED.search(image), f"{image}: pin an exact version or a digest"


def test_the_final_stage_holds_the_built_environment_and_no_build_tools(
    dockerfile: DockerfileParser,
) -> None:
    *builders, final = stages(dockerfile)
    assert builders, "a build stage and a final stage"
    # same interpreter as the stage that built the environment: its symlinks point at it
    build = next(stage for stage in builders if values(stage, "RUN"))
    assert dockerfile.parent_images[-1] == dockerfile.parent_images[len(builders) - 1]
    assert any("uv sync --frozen" in run for run in values(build, "RUN"))
    assert any("UV_COMPILE_BYTECODE=1" in env for env in values(build, "ENV"))
    # nothing is installed or run in the final stage: no package manager, compiler or uv
    assert values(final, "RUN") == []
    copies = values(final, "COPY")
    assert copies == ["--from=build /app/.venv /app/.venv"]
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in values(final, "ENV"))


def test_it_runs_as_the_charts_numeric_non_root_user(dockerfile: DockerfileParser) -> None:
    final = stages(dockerfile)[-1]
    user = values(final, "USER")[-1]
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
