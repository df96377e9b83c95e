"""What the API server (and its admission plugins) would refuse, or what can never be drained.

Schemas cannot express these: a request above its limit (ValidatePodSpec), an HPA whose
minimum is above its maximum, a container above its namespace's LimitRange maximum (the
LimitRanger plugin refuses the pod), and a PodDisruptionBudget that allows no voluntary
disruption at the workload's minimum replicas (every node drain then blocks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from platformctl.twin.refs import workloads
from platformctl.twin.sync import containers, pod_spec
from platformctl.twin.world import Obj, World, selects

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity (``250m``, ``1.5``, ``512Mi``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match[2] not in _SUFFIX:
        return None
    try:
        return Decimal(match[1]) * Decimal(str(_SUFFIX[match[2]]))
    except InvalidOperation:
        return None


def _resources(obj: Obj) -> Iterator[tuple[str, str, Decimal | None, Decimal | None]]:
    spec = pod_spec(obj)
    if spec is None:
        return
    for container in containers(spec):
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        for key in sorted(set(requests) | set(limits)):
            request = quantity(requests[key]) if key in requests else None
            limit = quantity(limits[key]) if key in limits else None
            yield str(container.get("name")), str(key), request, limit


def _replicas(world: World, obj: Obj) -> int:
    """The fewest replicas a workload runs: its HPA's minimum, else spec.replicas (default 1)."""
    for hpa in world.by_kind("HorizontalPodAutoscaler"):
        target = (hpa.document.get("spec") or {}).get("scaleTargetRef") or {}
        if hpa.namespace == obj.namespace and target.get("name") == obj.name:
            return int((hpa.document.get("spec") or {}).get("minReplicas", 1))
    return int((obj.document.get("spec") or {}).get("replicas", 1))


def _pods(value: object, replicas: int) -> int:
    """Pods a PDB's minAvailable or maxUnavailable amounts to (percentages round up)."""
    text = str(value)
    if text.endswith("%"):
        return math.ceil(replicas * float(text[:-1]) / 100)
    return int(text)


def _limit_maxima(world: World) -> dict[str, Mapping[str, Any]]:
    maxima: dict[str, Mapping[str, Any]] = {}
    for obj in world.by_kind("LimitRange"):
        for limit in (obj.document.get("spec") or {}).get("limits") or []:
            if limit.get("type") == "Container" and limit.get("max"):
                maxima[obj.namespace] = limit["max"]
    return maxima


def rejected(world: World) -> Iterator[tuple[Obj, str, str]]:
    maxima = _limit_maxima(world)
    for obj in world.objects:
        for container, key, request, limit in _resources(obj):
            if request is not None and limit is not None and request > limit:
                yield (
                    obj,
                    "PLAT018",
                    (
                        f'container "{container}": requests.{key} is above limits.{key}: the API '
                        "server refuses it (must be less than or equal to the limit)"
                    ),
                )
            ceiling = (
                quantity(maxima.get(obj.namespace, {}).get(key, ""))
                if obj.namespace in maxima
                else None
            )
            if ceiling is not None and limit is not None and limit > ceiling:
                yield (
                    obj,
                    "PLAT018",
                    (
                        f'container "{container}": limits.{key} is above the LimitRange maximum of '
                        f"namespace {obj.namespace}: its pods are refused"
                    ),
                )
        spec: Mapping[str, Any] = obj.document.get("spec") or {}
        if obj.kind == "HorizontalPodAutoscaler":
            low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 0))
            if low > high:
                yield (
                    obj,
                    "PLAT018",
                    (f"minReplicas {low} is above maxReplicas {high}: the API server refuses it"),
                )
        elif obj.kind == "PodDisruptionBudget":
            yield from _pdb(world, obj, spec)


def _pdb(world: World, obj: Obj, spec: Mapping[str, Any]) -> Iterator[tuple[Obj, str, str]]:
    selector = spec.get("selector") or {}
    for pods in workloads(world):
        if pods.namespace != obj.namespace or not selects(selector, pods.labels):
            continue
        replicas = _replicas(world, pods.owner)
        if "minAvailable" in spec:
            disruptions = replicas - _pods(spec["minAvailable"], replicas)
        elif "maxUnavailable" in spec:
            disruptions = _pods(spec["maxUnavailable"], replicas)
        else:
            continue
        if disruptions <= 0:
            yield (
                obj,
                "PLAT018",
                (
                    f"allows no voluntary disruption of {pods.owner.resource} at its minimum of "
                    f"{replicas} replica(s): every node drain blocks"
                ),
            )
