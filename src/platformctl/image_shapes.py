"""Image references with their tag and digest blanked, their shape kept.

A promotion changes a release's tag and digest and nothing else. What reads only an image's
shape (its repository; whether it has a tag, and whether that is ``latest``; whether it has a
digest) decides the same for every build of it, so the gate keys such verdicts on documents
and values with tag and digest blanked: checkov's image checks (see ``verify``) and the twin
of each environment's sync, which is given the releases' documents, values files and images
blanked where nothing in the environment decides on a tag (``twin.images``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

VERSION_LABEL = "app.kubernetes.io/version"
_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$")


def image_shape(image: str) -> str:
    """An image reference with tag and digest values blanked but their presence kept."""
    match = _IMAGE.match(image)
    if match is None:
        return image
    tag = match["tag"]
    shape = match["name"]
    if tag is not None:
        shape += ":latest" if tag == "latest" else ":<tag>"
    if match["digest"] is not None:
        shape += "@<digest>"
    return shape


def blank_images(value: Any, key: str = "") -> Any:
    """A rendered document with every ``image`` reduced to its shape and the version label
    (the chart's copy of the tag) blanked."""
    if isinstance(value, dict):
        return {k: blank_images(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [blank_images(item, key) for item in value]
    if key == "image" and isinstance(value, str):
        return image_shape(value)
    if key == VERSION_LABEL:
        return "<version>"
    return value


def blank_image_values(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """Values (a values file, or a release's merged values) with the ``image`` mapping's tag
    and digest blanked as ``image_shape`` blanks them; anything that is not a string stays."""
    image = values.get("image")
    if not isinstance(image, Mapping):
        return values
    blanked = dict(image)
    tag, digest = image.get("tag"), image.get("digest")
    if isinstance(tag, str) and tag != "latest":
        blanked["tag"] = "<tag>"
    if isinstance(digest, str):
        blanked["digest"] = "<digest>"
    return {**values, "image": blanked}
