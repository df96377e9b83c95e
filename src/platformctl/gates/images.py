"""The registry and signature gates: the image is what the stage before recorded, and signed.

Registry: the recorded digest exists; the tag still points to it (a moved tag is refused);
a tag without a digest is resolved, and the digest is what gets promoted. Signature: a cosign
key-based signature (``sha256-<hex>.sig`` in the image's repository, simple-signing payload,
ECDSA P-256 over SHA-256) verifies with one of the stage's public keys and names the digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from platformctl.gates.results import GateResult, Verdict
from platformctl.model import Image
from platformctl.oci import Reference, Registry

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"


class Registries:
    """One client per registry host, shared by the gate threads (tokens are cached)."""

    def __init__(self) -> None:
        self._clients: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def client(self, host: str) -> Registry:
        with self._lock:
            if host not in self._clients:
                self._clients[host] = Registry(host)
            return self._clients[host]


def check_registry(registries: Registries, service: str, image: Image) -> tuple[GateResult, Image]:
    """The result, and the image to promote (with the resolved digest filled in)."""
    reference = Reference.parse(image.repository)
    registry = registries.client(reference.host)

    def result(verdict: Verdict, measured: str) -> GateResult:
        return GateResult("registry", service, verdict, measured)

    tagged = registry.resolve(reference.name, image.tag) if image.tag else None
    if image.tag and tagged is None:
        return result(Verdict.failed, f"tag {image.tag} not in {image.repository}"), image
    if image.digest is None:
        assert tagged is not None
        filled = replace(image, digest=tagged)
        return result(Verdict.passed, f"{image.tag} → {tagged[:19]}… (digest filled in)"), filled
    if tagged is not None and tagged != image.digest:
        return (
            result(
                Verdict.failed,
                f"tag {image.tag} now points to {tagged[:19]}…, not the recorded "
                f"{image.digest[:19]}… (the tag was moved)",
            ),
            image,
        )
    if tagged is None and registry.resolve(reference.name, image.digest) is None:
        return result(Verdict.failed, f"{image.digest[:19]}… not in {image.repository}"), image
    shown = f"{image.tag} → " if image.tag else ""
    return result(Verdict.passed, f"{shown}{image.digest[:19]}… exists"), image


def check_signature(
    registries: Registries, service: str, image: Image, public_keys: Sequence[str]
) -> GateResult:
    def result(verdict: Verdict, measured: str) -> GateResult:
        return GateResult("signature", service, verdict, measured)

    if image.digest is None:
        return result(Verdict.failed, "no digest to verify (add the registry gate, or pin it)")
    reference = Reference.parse(image.repository)
    registry = registries.client(reference.host)
    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    manifest = registry.manifest(reference.name, tag)
    if manifest is None:
        return result(Verdict.failed, f"not signed: no {tag} in {image.repository}")
    try:
        keys = [_load_key(pem) for pem in public_keys]
    except ValueError as error:
        return result(Verdict.failed, f"a public key of the stage does not load: {error}")
    problems: list[str] = []
    for layer in manifest.json().get("layers", []):
        encoded = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if not encoded:
            continue
        payload = registry.blob(reference.name, layer["digest"])
        for key, fingerprint in keys:
            if not _verifies(key, encoded, payload):
                continue
            named = _signed_digest(payload)
            if named == image.digest:
                return result(Verdict.passed, f"signed, key {fingerprint}")
            problems.append(f"a valid signature names {str(named)[:19]}…, not this digest")
    if not problems:
        problems.append("no signature verifies with the stage's public key(s)")
    return result(Verdict.failed, problems[0])


def _load_key(pem: str) -> tuple[Any, str]:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(pem.encode())
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return key, "sha256:" + hashlib.sha256(der).hexdigest()[:12]


def _verifies(key: Any, encoded_signature: str, payload: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(base64.b64decode(encoded_signature), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _signed_digest(payload: bytes) -> str | None:
    try:
        critical = json.loads(payload)["critical"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(critical, dict) or critical.get("type") != SIMPLE_SIGNING_TYPE:
        return None
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    return digest if isinstance(digest, str) else None
