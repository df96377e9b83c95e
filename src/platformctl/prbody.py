"""The review document of a write: what a reviewer of its pull request needs to judge it.

The same Markdown is the body of ``--pull-request`` and the output of ``promote --dry-run
-o markdown``: the change table, the gate table with each gate's evidence, the rendered
manifests of the target before and after the plan's texts (per resource, each collapsed),
the policy delta (findings added and removed) and the change-risk class with the reviewers
the target stage declares for it (``review:`` in pipeline.yaml).

Only the releases whose values files the plan edits are rendered and verified: the others'
inputs do not change, so their manifests and findings cannot either. An image-only
promotion renders its one release twice and finds its verdicts in the verify cache.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from platformctl.gates.results import GateReport
from platformctl.model import Release, Repo
from platformctl.output import markdown_table
from platformctl.policy.findings import Finding
from platformctl.render import Renderer
from platformctl.verify import VerifyReport, verify

if TYPE_CHECKING:
    from platformctl.release import Plan

RISK_CLASSES = ("image", "configuration", "structure")
# A change to any of these kinds can take capacity, traffic or permissions away.
STRUCTURE_KINDS = frozenset(
    {
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    }
)
# GitHub refuses a pull request body longer than this (characters).
BODY_LIMIT = 65_536
# Lines of one resource's diff shown; the rest is on the branch.
DIFF_LINES = 300
_VERSION_LABEL = "app.kubernetes.io/version"
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class ResourceChange:
    target: str  # env/service whose render holds the resource
    kind: str
    namespace: str
    name: str
    change: str  # added | deleted | changed
    diff: str
    image_only: bool  # only image references and the version label differ

    @property
    def title(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class PolicyDelta:
    added: tuple[Finding, ...]
    removed: tuple[Finding, ...]
    failing: tuple[Finding, ...]  # after the plan, not excepted
    releases: int  # how many releases were verified after the plan


@dataclass(frozen=True)
class Review:
    plan: Plan
    resources: tuple[ResourceChange, ...]
    policy: PolicyDelta
    risk: str  # one of RISK_CLASSES
    reviewers: tuple[str, ...]

    def markdown(self, trailers: str = "") -> str:
        """The document; ``trailers`` (a pull request's: its commit's block) its last
        paragraph, within GitHub's limit."""
        return _document(self, trailers.strip())


def risk_class(resources: Iterable[ResourceChange]) -> str:
    """``structure`` for a deletion or a STRUCTURE_KINDS object added or changed (beyond
    the version label every object of a release carries), else ``configuration`` for
    anything but image references, else ``image``."""
    changes = list(resources)
    if any(
        r.change == "deleted" or (r.kind in STRUCTURE_KINDS and not r.image_only) for r in changes
    ):
        return "structure"
    if any(not r.image_only for r in changes):
        return "configuration"
    return "image"


def review(repo: Repo, plan: Plan, texts: Mapping[str, str]) -> Review:
    """The review of ``plan`` whose files will read ``texts`` (paths relative to the root)."""
    paths = [change.path for change in plan.changes] + [edit.path for edit in plan.egress]
    edited = {path: texts[str(path.relative_to(repo.root))] for path in paths}
    after = repo.with_release_files(edited, edited) if edited else repo
    services = list(
        dict.fromkeys([c.service for c in plan.changes] + [e.caller for e in plan.egress])
    )
    environment = plan.environment.name
    resources = _resource_changes(repo, after, environment, services)
    policy = _policy_delta(repo, after, environment, services)
    risk = risk_class(resources)
    return Review(plan, tuple(resources), policy, risk, plan.environment.review.get(risk, ()))


def _resource_changes(
    before: Repo, after: Repo, environment: str, services: list[str]
) -> list[ResourceChange]:
    renderer = Renderer(before)  # the charts are the same before and after
    found: list[ResourceChange] = []
    for service in services:
        old = _documents(renderer, before.releases.get((service, environment)))
        new = _documents(renderer, after.releases.get((service, environment)))
        target = f"{environment}/{service}"
        for key in [*old, *(k for k in new if k not in old)]:
            was, now = old.get(key), new.get(key)
            if was == now:
                continue
            change = "added" if was is None else "deleted" if now is None else "changed"
            image_only = was is not None and now is not None and _unimaged(was) == _unimaged(now)
            found.append(
                ResourceChange(target, *key, change, _diff(was, now, target, key), image_only)
            )
    return found


def _documents(renderer: Renderer, release: Release | None) -> dict[Key, dict[str, Any]]:
    if release is None:  # not deployed there (before a first image)
        return {}
    namespace = release.environment.namespace
    documents: dict[Key, dict[str, Any]] = {}
    for document in renderer.release(release).documents:
        metadata = document.get("metadata") or {}
        key = (
            str(document.get("kind")),
            str(metadata.get("namespace") or namespace),
            str(metadata.get("name")),
        )
        documents[key] = document
    return documents


def _unimaged(value: Any, key: str = "") -> Any:
    """A document with its image references and version label blanked: what must be equal
    for a change to be the image's alone (the chart's version label repeats the tag)."""
    if isinstance(value, dict):
        return {k: _unimaged(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_unimaged(item, key) for item in value]
    if key in ("image", _VERSION_LABEL) and isinstance(value, str):
        return "<image>"
    return value


def _dump(document: dict[str, Any] | None) -> list[str]:
    if document is None:
        return []
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=4096)
    return text.splitlines(keepends=True)


def _diff(
    before: dict[str, Any] | None, after: dict[str, Any] | None, target: str, key: Key
) -> str:
    name = f"{target}/{key[0]}/{key[2]}"
    lines = list(
        difflib.unified_diff(
            _dump(before),
            _dump(after),
            "/dev/null" if before is None else f"a/{name}",
            "/dev/null" if after is None else f"b/{name}",
        )
    )
    if len(lines) > DIFF_LINES:
        left = len(lines) - DIFF_LINES
        lines = [*lines[:DIFF_LINES], f"... {left} more line(s): see the commit\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _policy_delta(before: Repo, after: Repo, environment: str, services: list[str]) -> PolicyDelta:
    """Findings of the edited releases after the plan against before, by target, check and
    resource (a message naming the image is the same finding). After first: for an image
    change its checkov verdicts are the cache entry the before run then hits. No release
    edited (a hold): nothing to verify (an empty selection would verify the environment)."""
    if not services:
        return PolicyDelta((), (), (), 0)
    now = verify(after, [environment], services)
    present = [s for s in services if (s, environment) in before.releases]
    was = verify(before, [environment], present) if present else None
    old, new = _findings(was), _findings(now)
    return PolicyDelta(
        added=tuple(new[key] for key in sorted(set(new) - set(old))),
        removed=tuple(old[key] for key in sorted(set(old) - set(new))),
        failing=tuple(now.failing),
        releases=len(services),
    )


def _findings(report: VerifyReport | None) -> dict[tuple[str, str, str], Finding]:
    if report is None:
        return {}
    every = [*report.failing, *(item.finding for item in report.excepted)]
    return {(f.target, f.check, f.resource): f for f in every}


# --- the Markdown -----------------------------------------------------------------------------


def _document(item: Review, trailers: str) -> str:
    plan = item.plan
    parts = [f"### {plan.subject()}", _risk_line(item)]
    if plan.reason:
        parts.append(f"Reason: {plan.reason}")
    rows = [
        [c.service, c.before.label if c.before else "(no image)", c.after.label]
        for c in plan.changes
    ]
    if rows:
        parts.append(markdown_table(["service", "from", "to"], rows))
    notes = plan.notes()
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes))
    parts += [_gates(plan), _manifests(item), _policy(item)]
    manifests = len(parts) - 2
    parts += [trailers] if trailers else []
    body = "\n\n".join(parts) + "\n"
    if len(body) > BODY_LIMIT:
        # GitHub refuses the body: keep every summary, drop the diffs themselves
        parts[manifests] = _manifests(item, diffs=False)
        body = "\n\n".join(parts) + "\n"
    return body


def _risk_line(item: Review) -> str:
    why = {
        "image": "only image references change",
        "configuration": "rendered values other than images change",
        "structure": "a deletion, or a PodDisruptionBudget, HorizontalPodAutoscaler, "
        "NetworkPolicy, RBAC object or CRD changes",
    }[item.risk]
    if not item.resources:
        why = "nothing rendered changes"
    who = ", ".join(item.reviewers) if item.reviewers else "none required"
    return f"**Change risk: {item.risk}** ({why}). Reviewers: {who}."


def _gates(plan: Plan) -> str:
    title = f"#### Gates of {plan.environment.name}"
    report = plan.report or GateReport(plan.environment.name)
    # the policy gate's verdict is the policy section's (a dry run does not ask it)
    results = [r for r in report.results if r.gate != "policy"]
    if not results:
        return f"{title}\n\nNo gate was asked for this change."
    rows = [[r.gate, r.service or "*", str(r.verdict), r.measured] for r in results]
    lines = [title, "", markdown_table(["gate", "service", "result", "evidence"], rows)]
    lines += [f"\noverridden: {gate} ({reason})" for gate, reason in report.overrides.items()]
    return "\n".join(lines)


def _manifests(item: Review, *, diffs: bool = True) -> str:
    title = f"#### Rendered manifests of {item.plan.environment.name}"
    if not item.resources:
        return f"{title}\n\nNo rendered resource changes."
    counts = {kind: sum(r.change == kind for r in item.resources) for kind in _CHANGES}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    lines = [title, "", f"{len(item.resources)} resource(s): {summary}."]
    for resource in item.resources:
        only = " (image only)" if resource.image_only else ""
        label = html.escape(f"{resource.change}{only}: {resource.title} ({resource.target})")
        lines += ["", f"<details><summary>{label}</summary>", ""]
        if diffs:
            lines += [_fenced(resource.diff)]
        else:
            lines += ["(diff left out: the body would exceed GitHub's limit; see the commit)"]
        lines += ["", "</details>"]
    return "\n".join(lines)


_CHANGES = ("changed", "added", "deleted")


def _fenced(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}diff\n{text}{fence}"


def _policy(item: Review) -> str:
    delta = item.policy
    failing = len(delta.failing)
    verdict = (
        f"{failing} violation(s) after this change"
        if failing
        else f"clean after this change ({delta.releases} release(s) verified)"
    )
    if not delta.releases:
        verdict = "nothing to verify, no release changes"
    lines = ["#### Policy", "", f"platform verify --env {item.plan.environment.name}: {verdict}."]
    for title, findings in (("added", delta.added), ("removed", delta.removed)):
        if findings:
            rows = [[f.target, f.check, f.resource, f.message] for f in findings]
            table = markdown_table(["target", "check", "resource", "message"], rows)
            lines += ["", f"Findings {title}:", "", table]
    if not delta.added and not delta.removed:
        lines += ["", "No finding added or removed."]
    return "\n".join(lines)
