"""A real CNCF distribution registry (Debian ``docker-registry``) for tests, with its auth.

``token`` mode runs the registry behind a bearer-token service (the flow of Docker Hub,
GHCR, Harbor): a small token server in this process issues ES256 JWTs with an x5c chain the
registry trusts through ``rootcertbundle``. ``htpasswd`` mode answers with a ``Basic``
challenge, as ECR does. Images and cosign signatures are pushed through the OCI API.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from platformctl.oci import Registry
from tests.support.components import free_port, require, running

SERVICE = "platform-tests-registry"
ISSUER = "platform-tests-token-issuer"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens: ES256 with the certificate in the JWT's x5c header."""

    def __init__(self, folder: Path, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platform tests token issuer")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-issuer.pem"
        self.bundle.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def token(self, scope: str | None) -> str:
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(dt.datetime.now(dt.UTC).timestamp())
        chain = [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER))]
        header = {"typ": "JWT", "alg": "ES256", "x5c": [c.decode() for c in chain]}
        claims = {
            "iss": ISSUER,
            "sub": self.user,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _token_handler(issuer: TokenIssuer, requests: list[str]) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{issuer.user}:{issuer.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            requests.append(self.path)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": issuer.token(query.get("scope", [None])[0])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@dataclass
class RunningRegistry:
    host: str
    user: str
    password: str
    token_requests: list[str]

    def client(self, user: str | None = None, password: str | None = None) -> Registry:
        credentials = (user or self.user, password if password is not None else self.password)
        return Registry(self.host, credentials=lambda _host: credentials)

    def docker_config(self, folder: Path) -> Path:
        """A docker config folder with this registry's login (for DOCKER_CONFIG)."""
        folder.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return folder


@contextmanager
def start_registry(folder: Path, mode: str = "token") -> Iterator[RunningRegistry]:
    binary = require("docker-registry", "docker-registry")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user, password = (
        ("AWS", secrets.token_urlsafe(24))
        if mode == "htpasswd"
        else ("ci", secrets.token_urlsafe(16))
    )
    requests: list[str] = []
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    server: ThreadingHTTPServer | None = None
    if mode == "token":
        issuer = TokenIssuer(folder, user, password)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(issuer, requests))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        config["auth"] = {
            "token": {
                "realm": f"http://127.0.0.1:{server.server_port}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(issuer.bundle),
            }
        }
    else:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (folder / "htpasswd").write_text(f"{user}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(folder / "htpasswd")}}
    config_path = folder / "config.json"  # YAML is a superset of JSON
    config_path.write_text(json.dumps(config))
    try:
        with running(
            [binary, "serve", str(config_path)],
            f"http://127.0.0.1:{port}/v2/",
            folder / "registry.log",
        ):
            yield RunningRegistry(f"127.0.0.1:{port}", user, password, requests)
    finally:
        if server is not None:
            server.shutdown()


def push_blob(client: Registry, name: str, content: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    started = client.request("POST", name, "blobs/uploads/", actions=("pull", "push"))
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    separator = "&" if "?" in location else "?"
    url = (
        location
        if location.startswith("/")
        else urlparse(location)._replace(scheme="", netloc="").geturl()
    )
    done = client.request(
        "PUT",
        name,
        f"{url}{separator}digest={digest}",
        actions=("pull", "push"),
        headers={"Content-Type": "application/octet-stream"},
        content=content,
    )
    assert done.status_code == 201, done.text
    return digest


def push_manifest(client: Registry, name: str, reference: str, manifest: dict[str, Any]) -> str:
    content = json.dumps(manifest).encode()
    answer = client.request(
        "PUT",
        name,
        f"manifests/{reference}",
        actions=("pull", "push"),
        headers={"Content-Type": manifest["mediaType"]},
        content=content,
    )
    assert answer.status_code == 201, answer.text
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _descriptor(media_type: str, content: bytes, digest: str) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(content), "digest": digest}


def push_single_layer(
    client: Registry,
    name: str,
    reference: str,
    config: bytes,
    layer: tuple[str, bytes],
    annotations: dict[str, str] | None = None,
) -> str:
    """An OCI image manifest with one layer (media type, content) under ``reference``."""
    media_type, content = layer
    layer_descriptor = _descriptor(media_type, content, push_blob(client, name, content))
    if annotations:
        layer_descriptor["annotations"] = annotations
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(
            "application/vnd.oci.image.config.v1+json", config, push_blob(client, name, config)
        ),
        "layers": [layer_descriptor],
    }
    return push_manifest(client, name, reference, manifest)


def push_image(client: Registry, name: str, tag: str) -> str:
    """A small, unique single-layer image under ``tag``; returns its manifest digest."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = ("application/vnd.oci.image.layer.v1.tar+gzip", os.urandom(512))
    return push_single_layer(client, name, tag, config, layer)


def simple_signing_payload(repository: str, digest: str) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()


def push_signature(
    client: Registry,
    name: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    payload: bytes | None = None,
    signed_payload: bytes | None = None,
) -> None:
    """What ``cosign sign --key`` stores: the ``sha256-<hex>.sig`` manifest in the repo.

    ``payload`` replaces what is stored and ``signed_payload`` what is signed, so a test can
    tamper with one and not the other.
    """
    stored = payload or simple_signing_payload(f"{client.reference.host}/{name}", digest)
    signature = key.sign(signed_payload or stored, ec.ECDSA(hashes.SHA256()))
    tag = "sha256-" + digest.removeprefix("sha256:") + ".sig"
    annotation = {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()}
    push_single_layer(client, name, tag, b"{}", (COSIGN_PAYLOAD, stored), annotation)


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
