"""The twin blind to tags and digests: it finds the same, and it is used only where nothing
in the environment decides on a tag or a digest (``twin.images``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from platformctl.image_shapes import VERSION_LABEL
from platformctl.model import load_repo
from platformctl.render import GITOPS_TARGET, Rendered
from platformctl.twin import check_environment
from platformctl.twin.images import images_unread
from platformctl.twin.stack import stack_facts
from platformctl.twin.world import Target
from tests.twin.conftest import targets


def test_the_twin_finds_the_same_with_images_blanked(stacked: Path) -> None:
    """On every environment of the fixture, findings and all: no twin check reads a tag or a
    digest (a check that did would find otherwise here, or make ``images_unread`` say so)."""
    repo = load_repo(stacked)
    for environment in repo.environments:
        found = targets(repo, environment)
        assert images_unread(found), environment.name
        stack = stack_facts(repo, environment)
        exact = check_environment(repo, environment, found, stack)
        assert check_environment(repo, environment, found, stack, images_blanked=True) == exact


def _appset(template: str = "{{ .path.basename }}", **selector: Any) -> dict[str, Any]:
    generator: dict[str, Any] = {"git": {"files": [{"path": "environments/dev/*.yaml"}]}}
    if selector:
        generator["selector"] = selector
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "services"},
        "spec": {
            "goTemplate": True,
            "generators": [generator],
            "template": {"metadata": {"name": template}, "spec": {"project": "dev"}},
        },
    }


def _policy(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web", "labels": {VERSION_LABEL: "1.0.0"}},
        "spec": {"podSelector": selector},
    }


def _expression(key: str, operator: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": ["1.0.0"]}]}


UNREAD = {
    "a template that reads the repository": _appset("{{ .image.repository }}-{{ .path.basename }}"),
    "a selector that asks whether a tag exists": _appset(**_expression("image.tag", "Exists")),
    "a selector that asks whether no digest exists": _appset(
        **_expression("image.digest", "DoesNotExist")
    ),
    "a file extension in a template": _appset('{{ trimSuffix ".yaml" .path.filename }}'),
    "an object's own version label": _policy({"matchLabels": {"app": "web"}}),
}
READ = {
    "a template that reads the tag": _appset("{{ .path.basename }}-{{ .image.tag }}"),
    "a fasttemplate that reads the digest": _appset("{{image.digest}}"),
    "a template that indexes the image": _appset('{{ index . "image" }}'),
    "a template given every parameter": _appset("{{ toJson . }}"),
    "a template given the root": _appset("{{ $ }}"),
    "a selector on a tag's value": _appset(**_expression("image.tag", "In")),
    "a selector's labels on a digest": _appset(matchLabels={"image.digest": "sha256:00"}),
    "a selector's labels on the version": _policy({"matchLabels": {VERSION_LABEL: "1.0.0"}}),
    "an expression on the version": _policy(_expression(VERSION_LABEL, "NotIn")),
}


@pytest.mark.parametrize(
    ("document", "unread"),
    [*((d, True) for d in UNREAD.values()), *((d, False) for d in READ.values())],
    ids=[*UNREAD, *READ],
)
def test_what_decides_on_a_tag_or_a_digest_is_found(
    stacked: Path, document: dict[str, Any], unread: bool
) -> None:
    environment = load_repo(stacked).environment("dev")
    rendered = Rendered(environment, GITOPS_TARGET, {}, (document,))
    assert images_unread({rendered.key: Target(rendered, "charts/gitops")}) is unread


def test_an_applicationset_the_twin_does_not_generate_from_is_not_read(stacked: Path) -> None:
    """Only the Argo CD objects' ApplicationSets make the twin's Applications (an add-on's is
    one more object), and those are keyed exactly."""
    environment = load_repo(stacked).environment("dev")
    rendered = Rendered(environment, "addons", {}, (READ["a template that reads the tag"],))
    assert images_unread({rendered.key: Target(rendered, "charts/addons")})
