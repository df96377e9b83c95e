"""A small client of the OCI distribution API: resolve tags, read manifests and blobs.

Authentication follows the registry's ``WWW-Authenticate`` challenge, as docker and oras do:
``Basic`` (ECR, htpasswd registries) sends the credentials; ``Bearer`` fetches a token for
the repository scope from the realm it names (with the credentials, if any) and caches it.
Credentials come from ECR (``get_authorization_token``) for ECR hosts, else from the docker
config file; anonymous otherwise. Loopback registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformctl.errors import EnvironmentProblem, InputError
from platformctl.httpapi import TIMEOUT_SECONDS, EndpointError, EndpointUnreachable

if TYPE_CHECKING:
    import httpx

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
)
DOCKER_HUB = "registry-1.docker.io"
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

Credentials = tuple[str, str]


@dataclass(frozen=True)
class Reference:
    """``host/name`` of an image repository, as the distribution API addresses it."""

    host: str
    name: str

    @classmethod
    def parse(cls, repository: str) -> Reference:
        first, _, rest = repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest)
        name = repository if "/" in repository else f"library/{repository}"
        return cls(DOCKER_HUB, name)

    @property
    def base_url(self) -> str:
        hostname = re.sub(r":\d+$", "", self.host)
        return f"{'http' if hostname in _LOOPBACK else 'https'}://{self.host}"


@dataclass(frozen=True)
class Manifest:
    digest: str
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def docker_config_credentials(host: str) -> Credentials | None:
    """Credentials for ``host`` from ``$DOCKER_CONFIG/config.json`` (``auths`` entries)."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise InputError(f"{folder / 'config.json'}: not valid JSON ({error})") from None
    auths = config.get("auths") or {}
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def ecr_credentials(host: str, client: Any = None) -> Credentials:
    """A 12-hour ECR token through boto3 (the caller's AWS credentials and region)."""
    match = ECR_HOST.match(host)
    if match is None:
        raise InputError(f"{host} is not an ECR registry host")
    if client is None:
        import boto3

        client = boto3.client("ecr", region_name=match["region"])
    try:
        answer = client.get_authorization_token(registryIds=[match["account"]])
    except Exception as error:  # botocore raises many unrelated types; all mean "no token"
        raise EnvironmentProblem(
            f"cannot get an ECR token for {host}: {error}",
            hint="check the AWS credentials (profile, or OIDC role in CI) and "
            "ecr:GetAuthorizationToken",
        ) from error
    token = answer["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


def default_credentials(host: str) -> Credentials | None:
    if ECR_HOST.match(host):
        return ecr_credentials(host)
    return docker_config_credentials(host)


class Registry:
    """One registry host; thread-safe (httpx client), tokens cached per scope."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Callable[[str], Credentials | None] = default_credentials,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        import httpx

        self.reference = Reference(host, "")
        self.base_url = self.reference.base_url
        self._credentials_for = credentials
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._tokens: dict[str, str] = {}
        self.client: httpx.Client = httpx.Client(
            base_url=self.base_url, timeout=timeout, follow_redirects=True
        )

    def request(
        self,
        method: str,
        name: str,
        path: str,
        *,
        actions: Iterable[str] = ("pull",),
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """``{method} /v2/{name}/{path}``, answering one authentication challenge."""
        scope = f"repository:{name}:{','.join(actions)}"
        url = f"/v2/{name}/{path}" if not path.startswith("/") else path
        response = self._send(method, url, headers, content, self._tokens.get(scope))
        if response.status_code != 401:
            return response
        scheme, params = _challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            credentials = self._credentials_or_none()
            if credentials is None:
                raise self._refused(response, "needs credentials (docker login, or ECR)")
            authorization = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        elif scheme == "bearer" and params.get("realm"):
            authorization = "Bearer " + self._token(params, scope)
        else:
            raise self._refused(
                response, "sent an authentication challenge this tool cannot answer"
            )
        self._tokens[scope] = authorization
        response = self._send(method, url, headers, content, authorization)
        if response.status_code == 401:
            raise self._refused(response, "refused the credentials")
        return response

    def resolve(self, name: str, reference: str) -> str | None:
        """The digest ``reference`` (a tag or digest) points to, None if there is none."""
        response = self.request("HEAD", name, f"manifests/{reference}", headers=_ACCEPT)
        if response.status_code == 404:
            return None
        self._check(response, f"manifests/{reference} of {name}")
        digest: str | None = response.headers.get("docker-content-digest")
        if digest:
            return digest
        manifest = self.manifest(name, reference)
        return manifest.digest if manifest else None

    def manifest(self, name: str, reference: str) -> Manifest | None:
        response = self.request("GET", name, f"manifests/{reference}", headers=_ACCEPT)
        if response.status_code == 404:
            return None
        self._check(response, f"manifests/{reference} of {name}")
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise EnvironmentProblem(
                f"{self.base_url}: manifest {reference} of {name} does not match its digest"
            )
        return Manifest(digest, response.content)

    def blob(self, name: str, digest: str) -> bytes:
        response = self.request("GET", name, f"blobs/{digest}")
        self._check(response, f"blobs/{digest} of {name}")
        if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
            raise EnvironmentProblem(f"{self.base_url}: blob {digest} of {name} is corrupt")
        return response.content

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        content: bytes | None,
        authorization: str | None,
    ) -> httpx.Response:
        import httpx

        merged = dict(headers or {})
        if authorization:
            merged["Authorization"] = authorization
        try:
            return self.client.request(method, url, headers=merged, content=content)
        except httpx.HTTPError as error:
            raise EndpointUnreachable(
                f"registry at {self.base_url} unreachable: {type(error).__name__}: {error}"
            ) from error

    def _credentials_or_none(self) -> Credentials | None:
        if not self._credentials_read:
            self._credentials = self._credentials_for(self.reference.host)
            self._credentials_read = True
        return self._credentials

    def _token(self, params: dict[str, str], scope: str) -> str:
        import httpx

        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        credentials = self._credentials_or_none()
        try:
            answer = self.client.get(params["realm"], params=query, auth=credentials)
        except httpx.HTTPError as error:
            raise EndpointUnreachable(
                f"token service at {params['realm']} unreachable: {type(error).__name__}: {error}"
            ) from error
        if answer.status_code >= 400:
            raise EndpointError(
                f"token service at {params['realm']} answered {answer.status_code} for {scope}",
                hint="check the registry credentials (docker config, or ECR)",
            )
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise EnvironmentProblem(f"token service at {params['realm']} sent no token")
        return str(token)

    def _refused(self, response: httpx.Response, why: str) -> EndpointError:
        return EndpointError(
            f"registry at {self.base_url} {why} ({response.request.method} "
            f"{response.request.url.path}: {response.status_code})",
            hint="check the registry credentials (docker config, or ECR)",
        )

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise EndpointError(
                f"registry at {self.base_url} answered {response.status_code} for {what}",
            )


_ACCEPT = {"Accept": ", ".join(MANIFEST_TYPES)}


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))
