"""Is the stage before healthy with this image? Argo CD's view, and its SLOs in Prometheus."""

from __future__ import annotations

import datetime as dt
from string import Template

from platformctl.argocd import ArgoCD, application_name
from platformctl.gates.config import Objective, SloGate, format_duration
from platformctl.gates.results import GateResult, Verdict
from platformctl.git import Git
from platformctl.imagefile import image_of
from platformctl.model import Release
from platformctl.prometheus import Prometheus
from platformctl.status import same_artifact


def check_argocd(argocd: ArgoCD, git: Git, source: Release) -> GateResult:
    """The source's Application is Synced and Healthy at a revision that deploys its image."""
    name = application_name(source.service, source.environment.name)
    state = argocd.application(name)

    def result(verdict: Verdict, measured: str) -> GateResult:
        return GateResult("argocd", source.service, verdict, measured)

    if not state.settled or not state.revision:
        return result(Verdict.failed, f"{name} is {state.describe()}")
    path = str(source.values_file.relative_to(git.root))
    text = git.show(state.revision, path)
    if text is None:
        return result(
            Verdict.failed,
            f"{name} synced {state.revision[:12]}, which this clone does not have (git fetch)",
        )
    deployed = image_of(text)
    if deployed is None or not same_artifact(deployed, source.image):
        shown = deployed.label if deployed else "no image"
        return result(
            Verdict.failed,
            f"{name} synced {state.revision[:12]}, which deploys {shown}, not {source.image.label}",
        )
    return result(Verdict.passed, f"{name} Synced/Healthy at {state.revision[:12]}")


def check_slo(
    prometheus: Prometheus, gate: SloGate, source: Release, now: dt.datetime
) -> list[GateResult]:
    """One result per objective, each over the gate's window ending now."""
    results = []
    for objective, query in slo_queries(gate, source):
        value = prometheus.value(query, at=now)
        if value is None:
            measured = f"{objective.name}: no data over {format_duration(gate.window)}"
            results.append(GateResult("slo", source.service, Verdict.failed, measured))
            continue
        verdict = Verdict.passed if objective.met_by(value) else Verdict.failed
        sign = "<" if objective.below else ">"
        if verdict is Verdict.failed:
            sign = "≥" if objective.below else "≤"
        measured = (
            f"{objective.name} {format_value(objective, value)} {sign} "
            f"{format_value(objective, objective.threshold)} over {format_duration(gate.window)}"
        )
        results.append(GateResult("slo", source.service, verdict, measured))
    return results


def slo_queries(gate: SloGate, source: Release) -> list[tuple[Objective, str]]:
    """Each objective with the PromQL it sends for ``source`` over the gate's window."""
    names = {
        "service": source.service,
        "namespace": source.environment.namespace,
        "environment": source.environment.name,
        "window": f"{int(gate.window.total_seconds())}s",
    }
    return [(o, Template(o.query).safe_substitute(names)) for o in gate.objectives]


def format_value(objective: Objective, value: float) -> str:
    if objective.unit == "seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if objective.unit == "ratio":
        return f"{value * 100:.2f} %"
    if objective.unit == "per-minute":
        return f"{value:.0f}/min"
    return f"{value:g}"
