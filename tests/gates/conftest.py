"""The gates' world: a real registry and Prometheus (one each per test session), a recorded
Argo CD and a webhook receiver per test, and a fixture repository of the tests' own services
whose images live in that registry."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import edit_yaml, git
from tests.release.fleet import REGISTRY, make_fleet
from tests.support.argocd import TOKEN, AppState, FakeArgoCD
from tests.support.http import Request, serve
from tests.support.prometheus import RunningPrometheus, Workload, start_prometheus
from tests.support.registry import (
    RunningRegistry,
    public_key_pem,
    push_image,
    push_signature,
)

# The fixture repository's services; the first two run these tags in staging, pushed and signed.
SERVICES = ("svc-a", "svc-b", "svc-c", "svc-d")
STAGED = {"svc-a": "1.4.2", "svc-b": "3.1.0"}
IMAGE_LINE = re.compile(r"^image: .*$", re.MULTILINE)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    workload = Workload()
    with start_prometheus(tmp_path_factory.mktemp("prometheus"), workload) as running:
        yield running


@pytest.fixture
def argocd(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeArgoCD, str]]:
    fake = FakeArgoCD()
    with serve(fake.handle) as url:
        monkeypatch.setenv("ARGOCD_TOKEN_STAGING", TOKEN)
        monkeypatch.setenv("ARGOCD_TOKEN_PRODUCTION", TOKEN)
        yield fake, url


@dataclass
class Webhook:
    url: str
    status: int = 200
    received: list[Any] = field(default_factory=list)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook("")

    def receive(request: Request) -> tuple[int, str]:
        hook.received.append(request.body)
        return hook.status, "ok"

    with serve(receive) as url:
        hook.url = f"{url}/services/T000/B000/secret"
        monkeypatch.setenv("PLATFORM_WEBHOOK_PRODUCTION", hook.url)
        yield hook


@dataclass
class Gated:
    """A fixture repository with its images in the test registry and local endpoints."""

    root: Path
    registry: RunningRegistry
    key: ec.EllipticCurvePrivateKey

    def push(self, service: str, tag: str) -> str:
        return push_image(self.registry.client(), service, tag)

    def sign(
        self, service: str, digest: str, key: ec.EllipticCurvePrivateKey | None = None
    ) -> None:
        push_signature(self.registry.client(), service, digest, key or self.key)

    def set_image(self, env: str, service: str, tag: str, digest: str | None = None) -> None:
        path = self.root / f"environments/{env}/{service}.yaml"
        fields = f"repository: {self.registry.host}/{service}, tag: {tag}"
        if digest:
            fields += f', digest: "{digest}"'
        path.write_text(IMAGE_LINE.sub(f"image: {{{fields}}}", path.read_text(), count=1))

    def commit(self, message: str, *, age: dt.timedelta = dt.timedelta(0)) -> str:
        """Commit everything, dated ``age`` ago."""
        git(self.root, "add", "-A")
        when = f"@{int((dt.datetime.now(dt.UTC) - age).timestamp())} +0000"
        subprocess.run(
            ["git", "-C", str(self.root), "commit", "-qm", message],
            check=True,
            env={**os.environ, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when},
        )
        return git(self.root, "rev-parse", "HEAD").strip()

    def gates(self, stage: str, gates: dict[str, Any]) -> None:
        def change(pipeline: Any) -> None:
            for item in pipeline["stages"]:
                if item["name"] == stage:
                    item["gates"] = gates

        edit_yaml(self.root / "environments/pipeline.yaml", change, sequence_indent=4)

    def endpoints(self, env: str, **endpoints: Any) -> None:
        def change(settings: Any) -> None:
            settings.update(endpoints)

        edit_yaml(self.root / f"environments/{env}/environment.yaml", change)

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()


@pytest.fixture
def gated(tmp_path: Path, registry: RunningRegistry) -> Gated:
    """SERVICES in every stage; the STAGED tags pushed, digests recorded in staging, signed,
    and committed three days ago; production declares no gates until a test sets them."""
    root = make_fleet(tmp_path / "repo", list(SERVICES)).root
    for path in (root / "environments").glob("*/*.yaml"):
        path.write_text(path.read_text().replace(REGISTRY, registry.host))
    repo = Gated(root, registry, ec.generate_private_key(ec.SECP256R1()))
    for service, tag in STAGED.items():
        digest = repo.push(service, tag)
        repo.sign(service, digest)
        repo.set_image("staging", service, tag, digest)
    staged = " and ".join(f"{service} {tag}" for service, tag in STAGED.items())
    repo.commit(f"staging runs {staged}", age=dt.timedelta(days=3))
    return repo


def production_gates(repo: Gated, **extra: Any) -> dict[str, Any]:
    """Every gate, with settings the fixtures meet: the default production pipeline's shape."""
    gates: dict[str, Any] = {
        "freeze": {
            "timezone": "Europe/Berlin",
            "windows": [{"name": "last-year", "from": "2025-12-21", "until": "2026-01-04"}],
        },
        "soak": {"minimum": "24h"},
        "registry": {},
        "signature": {"publicKeys": [public_key_pem(repo.key)]},
        "argocd": {},
        "slo": {"window": "5s"},
    }
    gates.update(extra)
    return gates


def staging_endpoints(repo: Gated, argocd_url: str, prometheus_url: str) -> None:
    repo.endpoints(
        "staging",
        endpoints={
            "argocd": {"url": argocd_url, "tokenEnv": "ARGOCD_TOKEN_STAGING"},
            "prometheus": {"url": prometheus_url},
        },
    )


def settle(fake: FakeArgoCD, env: str, services: list[str], revision: str) -> None:
    for service in services:
        fake.apps[f"{service}-{env}"] = AppState(revision=revision)
