"""Registry and signature gates against a real distribution registry with token auth."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives.asymmetric import ec

from platformctl.gates.images import Registries, check_registry, check_signature
from platformctl.gates.results import Verdict
from platformctl.httpapi import EndpointError, EndpointUnreachable
from platformctl.model import Image
from platformctl.oci import Reference, Registry, docker_config_credentials, ecr_credentials
from tests.support.components import free_port
from tests.support.registry import (
    RunningRegistry,
    public_key_pem,
    push_image,
    push_signature,
    simple_signing_payload,
    start_registry,
)


def _image(registry: RunningRegistry, name: str, tag: str | None, digest: str | None) -> Image:
    return Image(f"{registry.host}/{name}", tag, digest)


def test_a_recorded_digest_that_the_tag_still_names_passes(registry: RunningRegistry) -> None:
    digest = push_image(registry.client(), "orders", "2.0.0")
    result, image = check_registry(
        Registries(), "orders", _image(registry, "orders", "2.0.0", digest)
    )
    assert result.verdict is Verdict.passed, result
    assert image.digest == digest
    # the credentials came from DOCKER_CONFIG and were traded for bearer tokens
    assert any("scope=repository%3Aorders%3Apull" in r for r in registry.token_requests)


def test_a_tag_without_digest_gets_the_registry_digest(registry: RunningRegistry) -> None:
    digest = push_image(registry.client(), "orders", "2.1.0")
    result, image = check_registry(
        Registries(), "orders", _image(registry, "orders", "2.1.0", None)
    )
    assert result.verdict is Verdict.passed
    assert "digest filled in" in result.measured
    assert image == _image(registry, "orders", "2.1.0", digest)


def test_a_moved_tag_is_refused(registry: RunningRegistry) -> None:
    recorded = push_image(registry.client(), "orders", "2.2.0")
    moved = push_image(registry.client(), "orders", "2.2.0")  # someone pushed over the tag
    result, image = check_registry(
        Registries(), "orders", _image(registry, "orders", "2.2.0", recorded)
    )
    assert result.verdict is Verdict.failed
    assert "the tag was moved" in result.measured
    assert moved[:19] in result.measured
    assert image.digest == recorded


def test_missing_tags_and_digests_are_refused(registry: RunningRegistry) -> None:
    push_image(registry.client(), "orders", "2.3.0")
    missing_tag, _ = check_registry(
        Registries(), "orders", _image(registry, "orders", "9.9.9", None)
    )
    assert missing_tag.verdict is Verdict.failed
    assert "tag 9.9.9 not in" in missing_tag.measured
    ghost = "sha256:" + "0" * 64
    missing_digest, _ = check_registry(
        Registries(), "orders", _image(registry, "orders", None, ghost)
    )
    assert missing_digest.verdict is Verdict.failed
    assert "not in" in missing_digest.measured


def test_wrong_credentials_and_a_dead_registry_are_errors_naming_the_endpoint(
    registry: RunningRegistry,
) -> None:
    with pytest.raises(EndpointError, match=r"token service at .* answered 401"):
        registry.client(password="wrong").resolve("orders", "2.0.0")
    dead = Registry(f"127.0.0.1:{free_port()}", credentials=lambda _h: None)
    with pytest.raises(
        EndpointUnreachable, match=r"registry at http://127\.0\.0\.1:\d+ unreachable"
    ):
        dead.resolve("orders", "1.0.0")


def test_ecr_tokens_answer_a_basic_challenge(tmp_path: Path) -> None:
    """ECR's flow: boto3 get_authorization_token (recorded answer), then Basic auth."""
    with start_registry(tmp_path / "ecr", "htpasswd") as ecr:
        digest = push_image(ecr.client(), "payments", "1.0.0")
        import boto3

        client = boto3.client(
            "ecr", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y"
        )
        token = base64.b64encode(f"AWS:{ecr.password}".encode()).decode()
        with Stubber(client) as stub:
            stub.add_response(
                "get_authorization_token",
                {
                    "authorizationData": [
                        {
                            "authorizationToken": token,
                            "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                        }
                    ]
                },
                {"registryIds": ["123456789012"]},
            )
            credentials = ecr_credentials("123456789012.dkr.ecr.eu-west-1.amazonaws.com", client)
        assert credentials == ("AWS", ecr.password)
        registry = Registry(ecr.host, credentials=lambda _host: credentials)
        assert registry.resolve("payments", "1.0.0") == digest
        anonymous = Registry(ecr.host, credentials=lambda _host: None)
        with pytest.raises(EndpointError, match="needs credentials"):
            anonymous.resolve("payments", "1.0.0")


def test_reference_parsing_and_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Reference.parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api") == Reference(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "team/api"
    )
    assert Reference.parse("nginx") == Reference("registry-1.docker.io", "library/nginx")
    assert Reference.parse("localhost:5000/api").base_url == "http://localhost:5000"
    assert Reference.parse("ghcr.io/acme/api").base_url == "https://ghcr.io"
    config = {"auths": {"https://ghcr.io": {"username": "bot", "password": "pat"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert docker_config_credentials("ghcr.io") == ("bot", "pat")
    assert docker_config_credentials("quay.io") is None


def _signed(
    registry: RunningRegistry, name: str, tag: str
) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = push_image(registry.client(), name, tag)
    return digest, key


def test_a_cosign_signature_by_the_stage_key_passes(registry: RunningRegistry) -> None:
    digest, key = _signed(registry, "billing", "1.0.0")
    push_signature(registry.client(), "billing", digest, key)
    image = _image(registry, "billing", "1.0.0", digest)
    rotated = [public_key_pem(ec.generate_private_key(ec.SECP256R1())), public_key_pem(key)]
    result = check_signature(Registries(), "billing", image, rotated)
    assert result.verdict is Verdict.passed, result
    assert result.measured.startswith("signed, key sha256:")


def test_unsigned_wrong_key_tampered_and_misdirected_signatures_are_refused(
    registry: RunningRegistry,
) -> None:
    digest, key = _signed(registry, "billing", "1.1.0")
    image = _image(registry, "billing", "1.1.0", digest)
    keys = [public_key_pem(key)]
    unsigned = check_signature(Registries(), "billing", image, keys)
    assert unsigned.verdict is Verdict.failed
    assert "not signed" in unsigned.measured

    stranger = ec.generate_private_key(ec.SECP256R1())
    push_signature(registry.client(), "billing", digest, stranger)
    wrong_key = check_signature(Registries(), "billing", image, keys)
    assert wrong_key.verdict is Verdict.failed
    assert "no signature verifies" in wrong_key.measured

    genuine = simple_signing_payload(f"{registry.host}/billing", digest)
    tampered = genuine.replace(
        b"cosign container image signature", b"cosign container image signaturE"
    )
    push_signature(
        registry.client(), "billing", digest, key, payload=tampered, signed_payload=genuine
    )
    assert check_signature(Registries(), "billing", image, keys).verdict is Verdict.failed

    other = push_image(registry.client(), "billing", "1.1.1")
    push_signature(
        registry.client(),
        "billing",
        digest,
        key,
        payload=simple_signing_payload(f"{registry.host}/billing", other),
    )
    misdirected = check_signature(Registries(), "billing", image, keys)
    assert misdirected.verdict is Verdict.failed
    assert "names sha256:" in misdirected.measured

    no_digest = check_signature(Registries(), "billing", Image(image.repository, "1.1.0"), keys)
    assert no_digest.verdict is Verdict.failed
    assert "no digest" in no_digest.measured
