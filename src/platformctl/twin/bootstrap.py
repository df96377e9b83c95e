"""What exists before Argo CD syncs anything: what EKS makes, and what the Pulumi program makes
per the GitOps Bridge contract (``platformctl.bridge``) and its Argo CD bootstrap.

These are facts about EKS, Argo CD and this repository's infra program, stated once here so the
twin can tell "nothing provides it" from "the platform provides it".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from platformctl.bridge import ADDON_ROLES, placeholder_annotations
from platformctl.model import Environment, Repo

# Namespaces every cluster has, and the one EKS StorageClass (gp2, in-tree EBS provisioner
# name, served by the EBS CSI driver add-on; not the default class on clusters made at 1.30+).
EKS_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
EKS_STORAGE_CLASSES = ("gp2",)
# CoreDNS, the EKS add-on: the peer of every pod's DNS egress, and the ports its container
# declares (dns, dns-tcp, metrics), which network policies towards it must match.
EKS_PODS: tuple[tuple[str, str, Mapping[str, str]], ...] = (
    ("kube-system", "coredns", {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"}),
)
EKS_POD_PORTS: Mapping[str, tuple[tuple[str, int, str], ...]] = {
    "coredns": (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")),
}
# Argo CD's own CRDs, installed by the argo-cd chart the bootstrap deploys.
ARGOCD_KINDS = ("Application", "ApplicationSet", "AppProject")
# The bootstrap writes the bridge's Application health check (``bridge.APPLICATION_HEALTH_KEY``)
# into Argo CD's configuration: a wave of Applications is Healthy only when the Applications in
# it are. Without it (Argo CD's default since 1.8) an Application is Healthy once it exists, and
# its waves order nothing.
ASSESSES_APPLICATIONS = True
# Certificates the infra program requests from ACM for an environment's domain (see the
# add-on identity component): the wildcard and the apex.
CERTIFICATE_NAMES = ("*.{domain}", "{domain}")
# The bootstrap leaves ``applicationsetcontroller.enable.new.git.file.globbing`` unset, so a git
# files generator globs as ``git ls-files`` does (Argo CD's default): ``*`` also crosses folders.
NEW_GIT_FILE_GLOBBING = False


@dataclass(frozen=True)
class Bootstrap:
    """The cluster before the first sync, and the Argo CD configuration the bootstrap sets."""

    namespaces: Mapping[str, Mapping[str, str]]  # name -> labels
    cluster_secret: Mapping[str, Any]
    server: str
    # (namespace, service account) -> the name of the IAM role the infra program makes trust it
    roles: Mapping[tuple[str, str], str]
    application_health: bool = ASSESSES_APPLICATIONS
    new_git_file_globbing: bool = NEW_GIT_FILE_GLOBBING
    storage_classes: tuple[str, ...] = EKS_STORAGE_CLASSES
    pods: tuple[tuple[str, str, Mapping[str, str]], ...] = EKS_PODS
    extra: tuple[Mapping[str, Any], ...] = field(default=())


def bootstrap_of(repo: Repo, environment: Environment) -> Bootstrap:
    """The bootstrap of one environment, from the model and the bridge contract."""
    annotations = placeholder_annotations(repo, environment)
    prefix = environment.cluster_name
    roles = {trust: f"{prefix}-{owner}" for owner, trust in ADDON_ROLES.items()}
    roles.update(
        {(environment.namespace, service): f"{prefix}-{service}" for service in repo.services}
    )
    namespaces: dict[str, Mapping[str, str]] = {name: {} for name in EKS_NAMESPACES}
    # The bootstrap makes Argo CD's namespace, baseline-enforced.
    namespaces[environment.argocd_namespace] = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    cluster_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": environment.cluster_name,
            "namespace": environment.argocd_namespace,
            "labels": {
                "argocd.argoproj.io/secret-type": "cluster",
                "environment": environment.name,
            },
            "annotations": annotations,
        },
    }
    return Bootstrap(
        namespaces=namespaces,
        cluster_secret=cluster_secret,
        server=environment.cluster_server,
        roles=roles,
    )
