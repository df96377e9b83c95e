"""``platform publish``: a new build into the first stage, checked in the registry first.

A publish is one more kind of plan (``Plan("publish", ...)``) on the write path of
``release``: planned under the lock, policy-checked, built aside, journaled, pushed and
re-planned on a moved remote like a promotion. What is particular to it happens while
planning, against the registry the image lives in (the registry gate's clients and
credentials):

- the tag is resolved to its digest (a given ``--digest`` must be what the tag names), and
  the first stage records both, so every later stage promotes exactly this build;
- the first stage's ``signature`` gate, if declared, verifies the cosign signature;
- a tag already recorded (in the first stage's history or any stage now) with another digest
  was moved, and a build created before the one running is older: both are refused unless
  ``--force --reason``. "Older" compares the image configs' ``created`` times, which every
  build tool writes whatever the tagging scheme (git SHAs, dates, semver); only when one of
  them has none are the tags compared as semantic versions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from platformctl.errors import InputError, RefusedError
from platformctl.gates.images import Registries, check_signature
from platformctl.gates.results import GateReport, GateResult, Verdict
from platformctl.git import Git
from platformctl.ledger import iter_history
from platformctl.model import Environment, Image, Release, Repo
from platformctl.oci import Reference, Registry
from platformctl.release import ImageChange, Plan, one_line_text, refuse_hold

SOURCE_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


class OlderBuild(RefusedError):
    """The build is older than the one the first stage runs (exit 1)."""


class MovedTag(RefusedError):
    """The tag was recorded with another digest before (exit 1)."""


@dataclass(frozen=True)
class Build:
    """What CI (or ``discover``) says was built."""

    service: str
    tag: str
    digest: str | None = None
    source_commit: str | None = None
    build_url: str | None = None
    force: bool = False
    reason: str | None = None


def version_of(tag: str | None) -> tuple[int, int, int, str | None] | None:
    """``v1.2.3-rc.1`` as (1, 2, 3, "rc.1"); None if the tag is not a semantic version."""
    match = _SEMVER.match(tag or "")
    if match is None:
        return None
    return int(match["major"]), int(match["minor"]), int(match["patch"]), match["pre"]


def _release_key(version: tuple[int, int, int, str | None]) -> tuple[int, int, int, int]:
    """Order of releases; a pre-release sorts before its release (semver 2.0 §11)."""
    major, minor, patch, pre = version
    return major, minor, patch, 0 if pre else 1


def created(registry: Registry, name: str, digest: str) -> dt.datetime | None:
    """The ``created`` time of the image config (of an index's first image: buildx lists its
    attestations as platform ``unknown/unknown``)."""
    manifest = registry.manifest(name, digest)
    body: Any = manifest.json() if manifest else None
    entries = body.get("manifests") if isinstance(body, dict) else None
    if isinstance(entries, list):
        images = [
            entry
            for entry in entries
            if isinstance(entry, dict) and (entry.get("platform") or {}).get("os") != "unknown"
        ]
        nested = registry.manifest(name, str(images[0].get("digest"))) if images else None
        body = nested.json() if nested else None
    config = body.get("config") if isinstance(body, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        return None
    try:
        text = json.loads(registry.blob(name, config["digest"])).get("created")
        when = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", str(text)).replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def first_stage(repo: Repo, env: str | None) -> Environment:
    stage = repo.environments[0]
    if env is not None and repo.environment(env).name != stage.name:
        raise InputError(
            f"publish writes into the first stage, {stage.name}, not {env}",
            hint=f"publish into {stage.name}, then: platform promote SERVICE --to {env}",
        )
    return stage


def _checked(build: Build) -> Build:
    """The build's texts as they may go into a commit (exit 2 otherwise)."""
    source = one_line_text("--source-commit", build.source_commit)
    if source is not None and not SOURCE_COMMIT.match(source.lower()):
        raise InputError(
            f"--source-commit '{source}' is not a commit id", hint="give the full hexadecimal SHA"
        )
    url = one_line_text("--build-url", build.build_url)
    if url is not None and not url.startswith(("https://", "http://")):
        raise InputError(f"--build-url '{url}' is not an http(s) URL")
    reason = one_line_text("--reason", build.reason)
    if build.force and not reason:
        raise InputError("--force needs --reason TEXT (it is recorded in the commit)")
    return Build(
        build.service,
        build.tag,
        build.digest,
        source and source.lower(),
        url,
        build.force,
        reason,
    )


def _recorded(git: Git, repo: Repo, release: Release) -> Iterator[Image]:
    """Every image the service runs in a stage now, then the first stage's history."""
    for stage in repo.environments:
        now = repo.releases.get((release.service, stage.name))
        if now is not None:
            yield now.image
    for entry in iter_history(git, release):
        yield entry.image


def _moved(git: Git, repo: Repo, release: Release, image: Image) -> str | None:
    for seen in _recorded(git, repo, release):
        if (
            seen.repository == image.repository
            and seen.tag == image.tag
            and seen.digest
            and seen.digest != image.digest
        ):
            return (
                f"tag {image.tag} of {release.service} was recorded with {seen.digest[:19]}…, "
                f"and now names {str(image.digest)[:19]}… (the tag was moved)"
            )
    return None


def _older(registry: Registry, name: str, current: Image, image: Image) -> str | None:
    running = current.digest or (registry.resolve(name, current.tag) if current.tag else None)
    assert image.digest is not None
    if running is not None and running != image.digest:
        then, now = created(registry, name, running), created(registry, name, image.digest)
        if then is not None and now is not None:
            if now < then:
                return (
                    f"{image.label} was built {now:%Y-%m-%d %H:%M:%S}Z, before "
                    f"{current.label} that runs now ({then:%Y-%m-%d %H:%M:%S}Z)"
                )
            return None
    old, new = version_of(current.tag), version_of(image.tag)
    if old is not None and new is not None and _release_key(new) < _release_key(old):
        return f"{image.tag} is an older version than {current.tag} that runs now"
    return None


def plan_publish(
    repo: Repo, build: Build, *, env: str | None = None, registries: Registries | None = None
) -> Plan:
    """The one-line image change of a build into the first stage, checked in the registry.

    An image the stage already runs (same tag and digest) is an empty plan: publishing the
    same build twice changes nothing."""
    build = _checked(build)
    stage = first_stage(repo, env)
    service = repo.service(build.service)
    release = repo.release(service, stage.name)
    current = release.image
    try:
        wanted = Image(current.repository, build.tag, build.digest)
    except ValueError as error:
        raise InputError(f"--tag/--digest: {error}") from None
    registries = registries or Registries()
    reference = Reference.parse(current.repository)
    registry = registries.client(reference.host)
    digest = registry.resolve(reference.name, build.tag)
    if digest is None:
        raise InputError(
            f"tag {build.tag} is not in {current.repository}",
            hint="push the image first, or check --tag",
        )
    if build.digest is not None and build.digest != digest:
        raise InputError(
            f"--digest {build.digest[:19]}… does not match tag {build.tag}, which names "
            f"{digest[:19]}… in {current.repository}",
            hint="publish the digest the build pushed, under its own tag",
        )
    image = Image(wanted.repository, build.tag, digest)
    if image == current:
        return Plan("publish", stage, unchanged=(service,))
    refuse_hold(stage, service)
    results = [GateResult("registry", service, Verdict.passed, f"{build.tag} → {digest[:19]}…")]
    keys = stage.gates.signature_keys
    if keys is not None:
        signed = check_signature(registries, service, image, keys)
        if signed.verdict is Verdict.failed:
            raise RefusedError(
                f"{service} {image.label}: signature of {stage.name} failed: {signed.measured}",
                hint="sign the digest in CI (cosign sign --key) with a key of pipeline.yaml",
            )
        results.append(signed)
    git = Git(repo.root)
    overrides: dict[str, str] = {}
    for problem, refusal in (
        (_moved(git, repo, release, image), MovedTag),
        (_older(registry, reference.name, current, image), OlderBuild),
    ):
        if problem is None:
            continue
        if not build.force:
            raise refusal(problem, hint="publish a new tag, or add --force --reason TEXT")
        results.append(GateResult("registry", service, Verdict.overridden, problem))
        overrides["registry"] = str(build.reason)
    return Plan(
        "publish",
        stage,
        (ImageChange(service, current, image, release.values_file),),
        reason=build.reason,
        report=GateReport(stage.name, results, overrides),
        source_commit=build.source_commit,
        build_url=build.build_url,
    )
