"""Objects that controllers make at run time, which no manifest holds but others refer to.

Only what the controllers deployed here are documented to make, read from the arguments the
rendered manifests give them (so a fork that changes the flags changes the objects):

- prometheus-operator's ``--kubelet-service=<namespace>/<name>`` makes and keeps that Service
  (and its Endpoints) for the kubelets, labelled as its kubelet controller labels it
  (pkg/kubelet/controller.go: ``k8s-app: kubelet``, ``app.kubernetes.io/name: kubelet``) with
  the ports ``https-metrics`` (10250), ``http-metrics`` (10255) and ``cadvisor`` (4194).
- kube-webhook-certgen's ``create --secret-name=<name> --namespace=<namespace>`` (the
  admission-webhook certificate Job of kube-prometheus-stack, ingress-nginx and others) makes
  that Secret when the Job runs: in the Job's own phase and wave, so a Deployment mounting it
  is ordered after it exactly when the Job is a PreSync hook.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from platformctl.twin.world import HOOK, WAVE, annotations_of, metadata

KUBELET_LABELS = {"k8s-app": "kubelet", "app.kubernetes.io/name": "kubelet"}
KUBELET_PORTS = (("https-metrics", 10250), ("http-metrics", 10255), ("cadvisor", 4194))
_ORDERING = (HOOK, WAVE, "helm.sh/hook", "helm.sh/hook-weight")


def _containers(document: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    spec = (((document.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return list(spec.get("containers") or [])


def _flags(args: Sequence[Any]) -> dict[str, str]:
    flags: dict[str, str] = {}
    for arg in args:
        name, equals, value = str(arg).partition("=")
        if name.startswith("--") and equals:
            flags[name[2:]] = value
    return flags


def made_by_controllers(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """What the workload ``document`` will create once it runs."""
    kind = document.get("kind")
    for container in _containers(document):
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        flags = _flags(args)
        if kind == "Deployment" and "kubelet-service" in flags:
            namespace, _, name = flags["kubelet-service"].partition("/")
            yield {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        **KUBELET_LABELS,
                        "app.kubernetes.io/managed-by": "prometheus-operator",
                    },
                },
                "spec": {
                    "clusterIP": "None",
                    "ports": [{"name": port, "port": number} for port, number in KUBELET_PORTS],
                },
            }
        if kind == "Job" and "create" in args and "secret-name" in flags:
            ordering = {
                key: value for key, value in annotations_of(document).items() if key in _ORDERING
            }
            yield {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": flags["secret-name"],
                    "namespace": flags.get("namespace")
                    or metadata(document).get("namespace")
                    or "default",
                    "annotations": ordering,
                },
                "type": "Opaque",
            }
