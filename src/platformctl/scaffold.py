"""A new service, as the model expects one: its values files in every stage, and the network
policy wired both ways.

``plan_service`` decides every text (nothing is written); ``check_service`` runs the verify
gate on a copy of the repository holding those texts; ``write_service`` writes them. The
first stage runs the image by tag; the later stages get their file without an image line, and
``platform promote`` writes that line (the service is not deployed there until then) and, with
``callers_egress``, the callers' egress there: a caller's egress names the service only where
it runs.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from platformctl.bridge import service_role_arn
from platformctl.errors import InputError, RefusedError, unknown_name
from platformctl.imagefile import flow_image, scalar, with_first_image
from platformctl.model import (
    BASE_DIR,
    ENVIRONMENTS_DIR,
    NAME_MAX,
    NAME_PATTERN,
    RESERVED_NAMES,
    Environment,
    Image,
    Repo,
    load_repo,
)
from platformctl.stacks import ECR_HOST
from platformctl.yamlio import display_path

DEFAULT_TAG = "0.1.0"
# Only to verify the later stages as a promotion will leave them: never written.
_CHECK_DIGEST = "sha256:" + "0" * 64
_ROLE_ARN = re.compile(r"^arn:aws:iam::(?P<account>[0-9]{12}):role/")
# What ``--like`` does not copy: what names the other service rather than its shape.
_IDENTITY_KEYS = ("image", "command", "args", "ingress", "fullnameOverride", "nameOverride")
EGRESS_KEY = ("networkPolicy", "egressTo", "services")
INGRESS_KEY = ("networkPolicy", "ingressFrom", "services")


@dataclass(frozen=True)
class ServicePlan:
    """The files a new service adds and the callers' files it edits (path -> new text)."""

    service: str
    like: str | None
    callers: tuple[str, ...]
    image: Image
    created: Mapping[str, str]
    edited: Mapping[str, str]
    later_stages: tuple[str, ...]

    @property
    def texts(self) -> dict[str, str]:
        return {**self.created, **self.edited}

    def diff(self, root: Path) -> str:
        parts: list[str] = []
        for relative, text in sorted(self.texts.items()):
            path = root / relative
            before = path.read_text(encoding="utf-8") if relative in self.edited else ""
            source = f"a/{relative}" if relative in self.edited else "/dev/null"
            parts += difflib.unified_diff(
                before.splitlines(keepends=True),
                text.splitlines(keepends=True),
                source,
                f"b/{relative}",
            )
        return "".join(parts)

    def next_steps(self, repo: Repo) -> list[str]:
        """What to do after the files are written, in order."""
        stacks = [env.name for env in repo.environments]
        first, *later = stacks
        return [
            f"The stacks read the service list from environments/ (the one model): no "
            f"Pulumi.<stack>.yaml edit. From this branch, run `pulumi up --stack <stack>` in "
            f"pipeline order ({', '.join(stacks)}): {first} creates the ECR repository "
            f"{self.image.repository}, every stack the IRSA role, secret and database user of "
            f"{self.service}.",
            f"Push the image {self.image.reference} (CI's build).",
            "Commit, open a pull request (CI runs `platform verify`), merge: Argo CD deploys "
            f"{self.service} in {first}.",
            *(self._promotion_step(name) for name in later),
        ]

    def _promotion_step(self, stage: str) -> str:
        step = f"platform promote {self.service} --to {stage}"
        if not self.callers:
            return f"{step} (writes its image line there)"
        return (
            f"{step} (writes its image line there and {self.service} into the egress of "
            f"{', '.join(self.callers)} there, in the same commit; move it into their base "
            "files once every stage runs it)"
        )

    def as_dict(self, repo: Repo) -> dict[str, Any]:
        return {
            "service": self.service,
            "like": self.like,
            "callers": list(self.callers),
            "image": self.image.reference,
            "created": sorted(self.created),
            "edited": sorted(self.edited),
            "without_image": list(self.later_stages),
            "next": self.next_steps(repo),
        }


def _split(values: Iterable[str]) -> tuple[str, ...]:
    names = [part.strip() for value in values for part in value.split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


def _check_new_name(repo: Repo, name: str) -> None:
    if not NAME_PATTERN.match(name) or len(name) > NAME_MAX or name in RESERVED_NAMES:
        raise InputError(
            f"'{name}' is not a valid service name",
            hint="a DNS label: lower-case letters, digits and '-', at most 53 characters",
        )
    taken = [env.path / f"{name}.yaml" for env in repo.environments]
    if name in repo.services or any(path.exists() for path in taken):
        raise InputError(f"service '{name}' already exists", hint="choose another name")


def _known(repo: Repo, kind: str, name: str) -> str:
    if name not in repo.services:
        raise unknown_name(kind, name, repo.services)
    return name


def _registry_host(repo: Repo, like: str | None) -> str:
    """The ECR registry of the first stage's images (one registry for all stages)."""
    first = repo.environments[0].name
    releases = [r for r in repo.releases.values() if r.environment.name == first]
    releases.sort(key=lambda release: release.service != like)
    for release in releases:
        host = release.image.repository.partition("/")[0]
        if ECR_HOST.match(host):
            return host
    raise InputError(
        f"no image of {first} is in ECR: cannot name the new service's repository",
        hint="images must live in <account>.dkr.ecr.<region>.amazonaws.com",
    )


def _account(repo: Repo, environment: Environment, like: str | None, host: str) -> str:
    """The account of the environment's IRSA roles, as its values files name them."""
    names = [like] if like else []
    for service in (*names, *repo.services):
        release = repo.releases.get((service, environment.name))
        arn = (release.environment_values.get("serviceAccount") or {}) if release else {}
        match = _ROLE_ARN.match(str(arn.get("roleArn", ""))) if isinstance(arn, dict) else None
        if match:
            return match["account"]
    match = ECR_HOST.match(host)
    assert match is not None
    return match["account"]


def _without_identity(values: Mapping[str, Any]) -> dict[str, Any]:
    """Another service's values less what names it: image, command, ingress, the services its
    network policy names, the URLs of the services it calls, its IRSA role."""
    shape = copy.deepcopy(dict(values))
    for key in _IDENTITY_KEYS:
        shape.pop(key, None)
    policy = shape.pop("networkPolicy", None)
    if isinstance(policy, dict):
        egress = {k: v for k, v in (policy.get("egressTo") or {}).items() if k != "services"}
        if egress:
            shape["networkPolicy"] = {"egressTo": egress}
    account = shape.get("serviceAccount")
    if isinstance(account, dict):
        account.pop("roleArn", None)
        if not account:
            shape.pop("serviceAccount")
    env = shape.get("env")
    if isinstance(env, dict):
        shape["env"] = {k: v for k, v in env.items() if not str(k).endswith("_URL")}
        if not shape["env"]:
            shape.pop("env")
    return shape


def _dump(header: Sequence[str], values: Mapping[str, Any], image: Image | None = None) -> str:
    lines = [f"# {line}\n" if line else "#\n" for line in header]
    if image is not None:
        lines.append(f"image: {flow_image(image)}\n")
    if values:
        lines.append(_block(values, 0))
    return "".join(lines)


def _block(values: Mapping[str, Any], indent: int) -> str:
    """Block mappings, flow lists of scalars: the layout of the repository's values files."""
    pad = " " * indent
    out = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.append(f"{pad}{key}:\n{_block(value, indent + 2)}")
        else:
            out.append(f"{pad}{key}: {_flow(value)}\n")
    return "".join(out)


def _flow(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    if isinstance(value, str):
        return scalar(value)
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _default_stage(environment: Environment, first: bool) -> dict[str, Any]:
    values: dict[str, Any] = {"replicaCount": max(1, environment.policy.min_replicas)}
    if environment.policy.require_pod_disruption_budget:
        values["podDisruptionBudget"] = {"enabled": True, "minAvailable": 1}
    values["env"] = {"LOG_LEVEL": "debug" if first else "info"}
    return values


def plan_service(
    repo: Repo,
    name: str,
    *,
    like: str | None = None,
    callers: Iterable[str] = (),
    tag: str = DEFAULT_TAG,
) -> ServicePlan:
    """Every text of the new service and of its callers' edited files (nothing written)."""
    _check_new_name(repo, name)
    if like is not None:
        _known(repo, "service", like)
    caller_names = tuple(_known(repo, "caller", caller) for caller in _split(callers))
    host = _registry_host(repo, like)
    try:
        image = Image(f"{host}/{name}", tag=tag)
    except ValueError as error:
        raise InputError(f"--tag: {error}") from None

    base_rel = f"{ENVIRONMENTS_DIR}/{BASE_DIR}/{name}.yaml"
    origin = f" (shaped like {like})" if like else ""
    if like:
        like_release = next(iter(repo.select(services=[like])), None)
        base = _without_identity(like_release.base_values if like_release else {})
        env_vars = base.get("env")
        if isinstance(env_vars, dict) and "DB_NAME" in env_vars:
            env_vars["DB_NAME"] = name.replace("-", "_")
    else:
        base = {"containerPort": 8000, "serviceMonitor": {"enabled": True}}
    if caller_names:
        policy = base.pop("networkPolicy", {})
        base["networkPolicy"] = {"ingressFrom": {"services": list(caller_names)}, **policy}
    created = {
        base_rel: _dump(
            [f"{name}: written by `platform new service`{origin}; describe it here."], base
        )
    }
    later: list[str] = []
    for index, environment in enumerate(repo.environments):
        first = index == 0
        source = repo.releases.get((like, environment.name)) if like else None
        if source is not None:
            values = _without_identity(source.environment_values)
        else:
            values = _default_stage(environment, first)
        values.setdefault("env", {})["ENVIRONMENT"] = environment.name
        account = _account(repo, environment, like, host)
        values["serviceAccount"] = {
            "roleArn": service_role_arn(account, environment.cluster_name, name)
        }
        header = [f"{name} in {environment.name}: only what differs from {base_rel}."]
        if first:
            header.append(
                "The image line is what `platform promote` and `platform rollback` change."
            )
        else:
            header.append("No image yet: `platform promote` writes the image line here.")
            later.append(environment.name)
        relative = f"{ENVIRONMENTS_DIR}/{environment.name}/{name}.yaml"
        created[relative] = _dump(header, values, image if first else None)

    edited: dict[str, str] = {}
    for caller in caller_names:
        edited.update(allow_egress(repo, caller, name, repo.environments[0].name))
    return ServicePlan(name, like, caller_names, image, created, edited, tuple(later))


@dataclass(frozen=True)
class EgressEdit:
    """A caller's values file in a stage, to name ``service`` in its egress there."""

    caller: str
    service: str
    path: Path
    # the base's list: a stage's list replaces it, so a new list there starts with it
    inherited: tuple[str, ...]

    def apply(self, text: str) -> str:
        """``text`` (the file as planned so far) with ``service`` added, on its lines only."""
        try:
            return append_to_list(text, EGRESS_KEY, self.service, missing=self.inherited)
        except InputError as error:
            raise InputError(
                f"{display_path(self.path)}: {error.message}",
                hint=f"add {self.service} to {'.'.join(EGRESS_KEY)} there by hand, then run again",
            ) from None


def egress_edit(repo: Repo, caller: str, service: str, stage: str) -> EgressEdit | None:
    """The edit that lets ``caller`` call ``service`` in ``stage`` (None when its egress
    there names it already, from the stage's file or the base's)."""
    release = repo.releases.get((caller, stage))
    if release is None:
        raise InputError(
            f"caller '{caller}' does not run in {stage}",
            hint=f"add {caller} to {stage} first, or leave it out of --callers",
        )
    if service in (_get(release.values, EGRESS_KEY) or []):
        return None
    inherited = tuple(_get(release.base_values, EGRESS_KEY) or [])
    return EgressEdit(caller, service, release.values_file, inherited)


def allow_egress(repo: Repo, caller: str, service: str, stage: str) -> dict[str, str]:
    """The caller's file in ``stage`` with ``service`` added to its egress (nothing if it is
    there already): only where the service runs (an egress peer with no pods is a finding of
    the verify gate, PLAT014)."""
    edit = egress_edit(repo, caller, service, stage)
    if edit is None:
        return {}
    return {str(edit.path.relative_to(repo.root)): edit.apply(edit.path.read_text("utf-8"))}


def callers_egress(repo: Repo, service: str, stage: str) -> tuple[EgressEdit, ...]:
    """What ``service``'s first image in ``stage`` needs of the services it admits there
    (``networkPolicy.ingressFrom.services``) that run there behind a network policy: their
    egress naming it. Without it the verify gate refuses the pair (PLAT014: one side admits
    what the other may not send), and ``platform new service`` named them in the first
    stage only. A caller not running there yet is left to its own first promotion."""
    release = repo.release(service, stage)
    edits = []
    for caller in _get(release.values, INGRESS_KEY) or []:
        running = repo.releases.get((caller, stage))
        if caller == service or running is None:
            continue
        if _get(running.values, ("networkPolicy", "enabled")) is False:
            continue  # no network policy: it may send anywhere
        edit = egress_edit(repo, caller, service, stage)
        if edit is not None:
            edits.append(edit)
    return tuple(edits)


def with_egress(
    root: Path, edits: Iterable[EgressEdit], texts: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``texts`` (path relative to ``root`` -> text) with ``edits`` made on top: a file
    edited twice (two new services, or a caller promoted in the same commit) gets both."""
    result = dict(texts or {})
    for edit in edits:
        name = str(edit.path.relative_to(root))
        result[name] = edit.apply(result[name] if name in result else edit.path.read_text("utf-8"))
    return result


def _get(data: Any, key_path: Sequence[str]) -> Any:
    for key in key_path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def append_to_list(
    text: str, key_path: Sequence[str], item: str, *, missing: Sequence[str] = ()
) -> str:
    """``text`` with ``item`` appended to the list at ``key_path`` (created as ``[*missing,
    item]`` if absent), edited on the lines ruamel locates so every other line, comment and
    quote stays byte for byte."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    data: Any = YAML(typ="rt").load(text) or CommentedMap()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    expected = copy.deepcopy(yaml.safe_load(text) or {})
    node, depth = data, 0
    while depth < len(key_path) and isinstance(node, CommentedMap) and key_path[depth] in node:
        node, depth = node[key_path[depth]], depth + 1
    where = ".".join(key_path)
    if depth == len(key_path):
        if not isinstance(node, CommentedSeq):
            raise InputError(f"{where} is not a list", hint="add the service by hand")
        if item in node:
            return text
        _append_item(lines, node, item)
    else:
        parent: Any = data
        for key in key_path[: depth - 1] if depth else ():
            parent = parent[key]
        if depth and (not isinstance(node, CommentedMap) or node.fa.flow_style()):
            raise InputError(f"{where}: written in flow style", hint="add the service by hand")
        rest = key_path[depth:]
        if depth:
            line = parent.lc.key(key_path[depth - 1])[0]
            indent = _indent_of(lines[line]) + 2
            at = line + 1
        else:
            indent, at = 0, len(lines)
        added = []
        items = ", ".join([*missing, item])
        for offset, key in enumerate(rest):
            pad = " " * (indent + 2 * offset)
            added.append(f"{pad}{key}: [{items}]\n" if key == rest[-1] else f"{pad}{key}:\n")
        lines[at:at] = added
    edited = "".join(lines)
    target = expected
    for key in key_path[:-1]:
        target = target.setdefault(key, {})
    last = key_path[-1]
    target[last] = [*((target[last] or []) if last in target else missing), item]
    if yaml.safe_load(edited) != expected:
        raise InputError(f"could not add {item} to {where}", hint="add the service by hand")
    return edited


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _append_item(lines: list[str], node: Any, item: str) -> None:
    if node.fa.flow_style():
        # one-line [a, b]: insert before the closing bracket on the line of the last item
        row = node.lc.item(len(node) - 1)[0] if node else node.lc.line
        line = lines[row]
        close = line.rfind("]", 0, line.find("#") if "#" in line else len(line))
        if close < 0:
            raise InputError("a flow list over several lines", hint="add the service by hand")
        separator = ", " if node else ""
        lines[row] = line[:close] + separator + item + line[close:]
        return
    row = node.lc.item(len(node) - 1)[0]
    dash = lines[row].index("-")
    lines.insert(row + 1, " " * dash + f"- {item}\n")


def check_service(repo: Repo, plan: ServicePlan) -> None:
    """The verify gate on a copy of the repository: first holding the planned texts (what CI
    will verify), then with the later stages as promotions will leave them (the first stage's
    image, with a digest, and the callers' egress there). Refuses with the first finding."""
    with tempfile.TemporaryDirectory(prefix="platform-new-") as scratch:
        root = Path(scratch) / "repo"
        root.mkdir()
        for entry in repo.root.iterdir():
            if entry.name not in (ENVIRONMENTS_DIR, ".git"):
                os.symlink(entry, root / entry.name)
        shutil.copytree(repo.environments_dir, root / ENVIRONMENTS_DIR, symlinks=True)
        _write(root, plan.texts)
        services = [plan.service, *plan.callers]
        written = load_repo(root)
        _refuse_findings(written, [], services)
        if not plan.later_stages:
            return
        promoted = Image(plan.image.repository, plan.image.tag, _CHECK_DIGEST)
        files = [f"{ENVIRONMENTS_DIR}/{stage}/{plan.service}.yaml" for stage in plan.later_stages]
        _write(root, {name: with_first_image(plan.texts[name], promoted) for name in files})
        # then the callers' egress, as each promotion will wire it (``callers_egress``)
        imaged = load_repo(root)
        edits = [
            e for stage in plan.later_stages for e in callers_egress(imaged, plan.service, stage)
        ]
        _write(root, with_egress(root, edits))
        _refuse_findings(load_repo(root), plan.later_stages, services, promoted=True)


def _write(root: Path, texts: Mapping[str, str]) -> None:
    for relative, text in texts.items():
        (root / relative).write_text(text, encoding="utf-8")


def _refuse_findings(
    repo: Repo, stages: Sequence[str], services: Sequence[str], *, promoted: bool = False
) -> None:
    from platformctl.verify import verify

    report = verify(repo, stages, services)
    if not report.ok:
        first = report.failing[0]
        when = " once promoted" if promoted else ""
        raise RefusedError(
            f"verify refused the new service{when}: {len(report.failing)} violation(s), first: "
            f"{first.target} {first.check} {first.resource}: {first.message}",
            hint="nothing was written; change --like/--callers or write the files by hand",
        )


def write_service(root: Path, plan: ServicePlan) -> None:
    """Write the planned texts: each to a temporary file first, then all renamed in place."""
    staged = []
    for relative, text in sorted(plan.texts.items()):
        path = root / relative
        temporary = path.with_name(f".{path.name}.new")
        temporary.write_text(text, encoding="utf-8")
        staged.append((temporary, path))
    for temporary, path in staged:
        temporary.replace(path)
