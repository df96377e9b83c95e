"""The offline twin of one environment's Argo CD sync.

From the gate's rendered targets, the repo model, the stack settings and the bridge contract,
it builds what the cluster will hold and in which order Argo CD applies it (``world``), then
asks what a real first sync would trip over: requirements met too late or never (``sync``),
names that do not resolve and network policies that do not match up (``refs``), fields that
never settle (``drift``), pods the Pod Security admission refuses (``pss``) and what the API
server refuses (``admission``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from platformctl.model import Environment, Repo
from platformctl.policy.findings import Finding
from platformctl.twin.admission import rejected
from platformctl.twin.bootstrap import Bootstrap
from platformctl.twin.build import build
from platformctl.twin.crds import Crds
from platformctl.twin.deletion import crd_deletions
from platformctl.twin.drift import perpetual_diffs
from platformctl.twin.images import blanked
from platformctl.twin.pss import declared_levels, pod_security
from platformctl.twin.refs import hosts, names, network_policies
from platformctl.twin.stack import StackFacts
from platformctl.twin.sync import convergence, declared_crds
from platformctl.twin.world import Obj, Target

ENGINE = "twin"
CHECKS: Mapping[str, str] = {
    "PLAT012": "Every resource's requirements are met before Argo CD waits for it",
    "PLAT013": "Every name a resource refers to exists in the environment",
    "PLAT014": "Network policies select existing peers, agree both ways on ports pods listen on, "
    "stay in the VPC",
    "PLAT015": "Ingress hosts are covered by the certificate and the DNS domain filter",
    "PLAT016": "No field that Argo CD's diff never settles",
    "PLAT017": "Pods pass the Pod Security Standard their namespace enforces",
    "PLAT018": "Nothing the API server or its admission refuses",
    "PLAT019": "Each ApplicationSet generates exactly the Applications the gate renders",
    "PLAT020": "No Application's deletion or prune deletes CustomResourceDefinitions",
}


def check_environment(
    repo: Repo,
    environment: Environment,
    targets: Mapping[str, Target],
    stack: StackFacts | None,
    bootstrap: Bootstrap | None = None,
    pinned: Crds | None = None,
    *,
    images_blanked: bool = False,
) -> list[Finding]:
    """Every finding of the twin for one environment, on the targets that hold the resource
    (``bootstrap`` and ``pinned`` CRDs from the model and ``crds/`` unless given); with
    ``images_blanked``, of a model and targets whose releases' tags and digests it is not
    given (``twin.images``: only where nothing decides on them)."""
    if images_blanked:
        repo, targets = blanked(repo, targets)
    world = build(repo, environment, targets, bootstrap, pinned)
    found: Iterable[tuple[Obj, str, str]]
    findings = [
        Finding(target, "PLAT019", resource, message, ENGINE)
        for target, resource, message in world.notes
    ]
    for found in (
        convergence(world),
        declared_crds(world),
        names(world),
        network_policies(world, stack),
        hosts(world, stack),
        perpetual_diffs(world),
        pod_security(world),
        declared_levels(world),
        rejected(world),
        crd_deletions(world),
    ):
        for obj, check, message in found:
            findings.append(Finding(obj.target, check, obj.resource, message, ENGINE))
    return sorted(set(findings))
