"""checkov's Kubernetes checks, run once per gate in-process over every target not cached.

Importing checkov costs ~4 s, so it is imported only when some target needs checking. Each
target is given a namespace of its own in checkov's input so that graph checks (such as
"every pod has a NetworkPolicy") see one release at a time: a verdict then depends only on that
release's manifests, which is what makes caching it per release sound.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# checkov checks that project rules replace, because the answer depends on the environment:
# dev deploys tags that CI pushed, staging and production must pin digests.
REPLACED_CHECKS: Mapping[str, str] = {
    "CKV_K8S_43": "PLAT001 (digest required per environment)",
    "CKV_K8S_14": "PLAT002 (no latest or missing tag)",
}
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class CheckovFailure:
    check: str
    title: str
    resource: str  # Kind/name


def checkov_version() -> str:
    from importlib.metadata import version

    return version("checkov")


def _checkable(document: dict[str, Any]) -> dict[str, Any]:
    """checkov's pod checks know Deployments but not Argo Rollouts; a Rollout's pod template is
    a Deployment's, so it is checked as one (and reported as the Rollout)."""
    if document.get("kind") != "Rollout":
        return document
    spec = document.get("spec") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": document.get("metadata") or {},
        "spec": {key: spec[key] for key in ("replicas", "selector", "template") if key in spec},
    }


def _isolated(documents: Sequence[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    isolated = []
    for document in documents:
        checkable = _checkable(document)
        metadata = dict(checkable.get("metadata") or {})
        metadata["namespace"] = namespace
        isolated.append({**checkable, "metadata": metadata})
    return isolated


def _rollouts(documents: Sequence[dict[str, Any]]) -> frozenset[str]:
    return frozenset(
        str((d.get("metadata") or {}).get("name")) for d in documents if d.get("kind") == "Rollout"
    )


def run_checkov(targets: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, list[CheckovFailure]]:
    """Failures per target key; every target key is present in the result."""
    results: dict[str, list[CheckovFailure]] = {key: [] for key in targets}
    if not targets:
        return results
    # checkov logs warnings about skipped files and prints a banner; neither is for users here.
    logging.getLogger("checkov").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        from checkov.kubernetes.runner import Runner
        from checkov.runner_filter import RunnerFilter

        with tempfile.TemporaryDirectory(prefix="platform-checkov-") as folder:
            files: dict[str, str] = {}
            rollouts: dict[str, frozenset[str]] = {}
            for index, (key, documents) in enumerate(targets.items()):
                path = Path(folder, f"t{index}.yaml")
                path.write_text(yaml.dump_all(_isolated(documents, f"t{index}"), Dumper=_Dumper))
                files[str(path)] = key
                rollouts[key] = _rollouts(documents)
            report: Any = Runner().run(
                root_folder=None,
                files=list(files),
                runner_filter=RunnerFilter(
                    framework=["kubernetes"], skip_checks=list(REPLACED_CHECKS)
                ),
            )
    reports = report if isinstance(report, list) else [report]
    for each in reports:
        for failed in each.failed_checks:
            target = files.get(str(failed.file_abs_path))
            if target is None:
                continue
            kind, _namespace, name = str(failed.resource).split(".", 2)
            if kind == "Deployment" and name in rollouts[target]:
                kind = "Rollout"
            results[target].append(
                CheckovFailure(failed.check_id, str(failed.check_name), f"{kind}/{name}")
            )
    return results
