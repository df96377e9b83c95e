"""The twin blind to tags and digests: when nothing in the environment decides on them.

No twin check reads an image's tag or digest, so the twin can be given documents and values
with both blanked (``image_shapes``), and its findings then depend on neither: the gate keys
them on the blanked inputs, and a promotion (a new tag and digest) is answered by the twin of
the build before it. What Argo CD itself could decide on, though, is read there too:

- an ApplicationSet's post selector or template may read a values file's ``image.tag`` or
  ``image.digest`` (a selector that asks only whether one exists reads what blanking keeps);
- a selector may name the version label, which the service chart copies from the tag.

Either one makes the twin model the environment with the real tags (``images_unread`` is
False), keyed on them as before. Conservatively: a template that names ``image`` at all
other than ``image.repository``, and the version label anywhere but an object's own
``labels`` (an annotation too), count as read. Files the generator reads that are no
release's (a values file with no image line yet, a stray copy) are read as they are, and
keyed exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from platformctl.image_shapes import VERSION_LABEL, blank_image_values, blank_images
from platformctl.model import Image, Release, Repo
from platformctl.render import GITOPS_TARGET
from platformctl.twin.world import Target

_BLANKED_PARAMS = ("image.tag", "image.digest")
_PRESENCE = ("Exists", "DoesNotExist")
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_REPOSITORY = re.compile(r"\bimage\s*\.\s*repository\b")
_IMAGE = re.compile(r"\bimage\b")
# the whole parameter set (``.``, ``$``), which ``toJson .`` or ``range`` could read entirely
_WHOLE = re.compile(r"(?<![\w\"'.\])])[.$](?![\w.])")


def images_unread(targets: Mapping[str, Target]) -> bool:
    """Whether no ApplicationSet the twin generates from (the Argo CD objects') reads a tag or
    digest value and no selector of any target names the version label. Both are what the
    blanked key shows of them: the Argo CD objects are keyed exactly, and blanking keeps every
    key and every match expression."""
    for target in targets.values():
        generates = target.rendered.name == GITOPS_TARGET
        for document in target.rendered.documents:
            kind = document.get("kind")
            if kind == "CustomResourceDefinition":
                continue  # a schema, not a selector (and ~1 MB each)
            generated = generates and kind == "ApplicationSet"
            if generated and _reads_image_params(document.get("spec") or {}):
                return False
            if _names_version_label(document):
                return False
    return True


def blanked(repo: Repo, targets: Mapping[str, Target]) -> tuple[Repo, dict[str, Target]]:
    """The model with every release's build blanked (what the generators read of the values
    files), and the targets with each release's documents blanked too (add-ons deploy no
    build of ours)."""
    releases = {key: _blanked_release(release) for key, release in repo.releases.items()}
    views: dict[str, Target] = {}
    for key, target in targets.items():
        rendered, release = target.rendered, target.rendered.release
        if release is not None:
            # no manifest text: the twin reads documents only, and the text holds the tags
            rendered = replace(
                rendered,
                manifests={},
                documents=tuple(blank_images(document) for document in rendered.documents),
                release=releases.get((release.service, release.environment.name))
                or _blanked_release(release),
            )
        views[key] = Target(rendered, target.chart)
    return replace(repo, releases=releases), views


def _blanked_release(release: Release) -> Release:
    """The release with a stand-in build of the same shape: a valid tag (``latest`` kept) and
    digest, and its values files' tag and digest blanked."""
    image = release.image
    return replace(
        release,
        image=Image(
            image.repository,
            None if image.tag is None else "latest" if image.tag == "latest" else "blanked",
            None if image.digest is None else "sha256:" + "0" * 64,
        ),
        base_values=blank_image_values(release.base_values),
        environment_values=blank_image_values(release.environment_values),
    )


def _names_version_label(value: Any, parent: str = "") -> bool:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == VERSION_LABEL and parent != "labels":
                return True  # a selector's (or anything but an object's own labels)
            if key == "key" and item == VERSION_LABEL:
                return True  # a match expression
            if _names_version_label(item, key):
                return True
        return False
    if isinstance(value, list):
        return any(_names_version_label(item, parent) for item in value)
    return False


def _reads_image_params(spec: Mapping[str, Any]) -> bool:
    return any(_selector_reads(selector) for selector in _selectors(spec)) or any(
        _template_reads(text) for text in _strings(spec)
    )


def _selectors(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "selector" and isinstance(item, dict):
                yield item
            yield from _selectors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _selectors(item)


def _selector_reads(selector: Mapping[str, Any]) -> bool:
    if any(key in _BLANKED_PARAMS for key in selector.get("matchLabels") or {}):
        return True
    return any(
        isinstance(expression, dict)
        and expression.get("key") in _BLANKED_PARAMS
        and expression.get("operator") not in _PRESENCE
        for expression in selector.get("matchExpressions") or []
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _template_reads(text: str) -> bool:
    """Whether a template (goTemplate or fasttemplate) could read a tag or a digest: an
    action naming ``image`` beyond ``image.repository``, or reading every parameter."""
    for action in _ACTION.findall(text):
        if _IMAGE.search(_REPOSITORY.sub("", action)) or _WHOLE.search(action):
            return True
    return False
