"""The Argo CD chart each stack installs is the vendored, locked one."""

from __future__ import annotations

import pytest
import yaml

from platformctl.model import load_repo
from platformctl.stacks import load_settings, stack_file
from platformctl.vendor import Lock
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_the_stacks_install_the_vendored_argo_cd(stack: str) -> None:
    repo = load_repo(PROJECT_ROOT)
    path = stack_file(PROJECT_ROOT, stack)
    config = yaml.safe_load(path.read_text())["config"]
    settings = load_settings(stack, config, repo, path)
    assert settings.argocd.chart_version == Lock.load(PROJECT_ROOT).get("argo-cd").version
