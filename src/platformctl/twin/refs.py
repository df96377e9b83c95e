"""Referential integrity that does not change the sync order, network policies and hosts.

Names resolved here: Services behind Ingresses (and their port names), ServiceMonitor port
names, HPA and PDB targets, the IAM role a secret store's service account assumes. Network
policies: every peer selects something that exists, traffic one side allows the other side
admits on the same ports, those ports are ones the receiving pods listen on, and ipBlocks lie
inside the VPC. Ingress hosts: inside the certificate's names and
external-dns's domain (both from the stack's domain).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from platformctl.twin.bootstrap import CERTIFICATE_NAMES
from platformctl.twin.stack import StackFacts
from platformctl.twin.sync import containers, pod_labels, pod_spec
from platformctl.twin.world import Obj, World, annotations_of, labels_of, selects

Found = Iterator[tuple[Obj, str, str]]
# A range of ports of one protocol: (protocol, first, last).
Span = tuple[str, int, int]
EVERY_PORT = (1, 65535)
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"


@dataclass(frozen=True)
class Pods:
    """The pods of one workload (what network policies and PDBs select)."""

    namespace: str
    labels: Mapping[str, Any]
    owner: Obj

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.owner.name}"


def workloads(world: World) -> list[Pods]:
    return [
        Pods(obj.namespace, pod_labels(obj), obj)
        for obj in world.objects
        if pod_spec(obj) is not None
    ]


def _known(world: World, namespace: str) -> bool:
    """The twin knows every pod of a namespace when no unrendered Application deploys there."""
    return not world.opaque(namespace)


def names(world: World) -> Found:
    """Names that must resolve for the objects to do anything."""
    services = {(o.namespace, o.name): o for o in world.by_kind("Service")}
    pods = workloads(world)
    for obj in world.objects:
        spec: Mapping[str, Any] = obj.document.get("spec") or {}
        if obj.kind == "Ingress":
            yield from _ingress_backends(world, obj, spec, services)
        elif obj.kind == "ServiceMonitor" and obj.group == "monitoring.coreos.com":
            yield from _service_monitor(world, obj, spec, services)
        elif obj.kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            missing = not world.find(str(ref.get("kind")), obj.namespace, str(ref.get("name")))
            if missing and _known(world, obj.namespace):
                message = f"scales {ref.get('kind')}/{ref.get('name')}, which does not exist"
                yield obj, "PLAT013", message
        elif obj.kind == "PodDisruptionBudget":
            selector = spec.get("selector") or {}
            chosen = [
                p for p in pods if p.namespace == obj.namespace and selects(selector, p.labels)
            ]
            if not chosen and _known(world, obj.namespace):
                yield obj, "PLAT013", "selects no pods: it protects nothing"
        elif obj.kind == "ServiceAccount" and ROLE_ANNOTATION in annotations_of(obj.document):
            yield from _role_trust(world, obj)


def _ingress_backends(
    world: World, obj: Obj, spec: Mapping[str, Any], services: Mapping[tuple[str, str], Obj]
) -> Found:
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [
            path.get("backend") or {} for path in (rule.get("http") or {}).get("paths") or []
        ]
    for backend in backends:
        service = backend.get("service") or {}
        if not service.get("name"):
            continue
        found = services.get((obj.namespace, service["name"]))
        if found is None:
            if _known(world, obj.namespace):
                yield obj, "PLAT013", f"routes to Service {service['name']}, which does not exist"
            continue
        port = service.get("port") or {}
        ports = (found.document.get("spec") or {}).get("ports") or []
        if port.get("name") and port["name"] not in {p.get("name") for p in ports}:
            yield (
                obj,
                "PLAT013",
                f"routes to port '{port['name']}' of Service {found.name}, which has no such port",
            )
        if port.get("number") and port["number"] not in {p.get("port") for p in ports}:
            yield (
                obj,
                "PLAT013",
                f"routes to port {port['number']} of Service {found.name}, which has no such port",
            )


def _service_monitor(
    world: World, obj: Obj, spec: Mapping[str, Any], services: Mapping[tuple[str, str], Obj]
) -> Found:
    selector = spec.get("selector") or {}
    scope = spec.get("namespaceSelector") or {}
    namespaces = scope.get("matchNames") or [obj.namespace]
    matched = [
        service
        for (namespace, _), service in services.items()
        if (scope.get("any") or namespace in namespaces)
        and selects(selector, labels_of(service.document))
    ]
    if not matched:
        if all(_known(world, ns) for ns in namespaces):
            yield obj, "PLAT013", "selects no Service: nothing is scraped"
        return
    port_names = {
        p.get("name") for s in matched for p in (s.document.get("spec") or {}).get("ports") or []
    }
    for endpoint in spec.get("endpoints") or []:
        port = endpoint.get("port")
        if port and port not in port_names:
            yield obj, "PLAT013", f"scrapes port '{port}', which no Service it selects names"


def _role_trust(world: World, obj: Obj) -> Found:
    """The role a service account assumes must be one the infra program makes trust exactly it."""
    role = str(annotations_of(obj.document)[ROLE_ANNOTATION]).rpartition(":role/")[2]
    trusted = world.bootstrap.roles.get((obj.namespace, obj.name))
    if trusted == role:
        return
    owners = sorted(
        f"{ns}/{sa}" for (ns, sa), name in world.bootstrap.roles.items() if name == role
    )
    where = f"trusts only {', '.join(owners)}" if owners else "the infra program does not make"
    own = f" (its own is {trusted})" if trusted else ""
    yield (
        obj,
        "PLAT013",
        (f"assumes IAM role {role}, which {where}{own}: its pods get no AWS credentials"),
    )


# --- network policies ---------------------------------------------------------------------


def _namespace_labels(world: World) -> dict[str, Mapping[str, Any]]:
    return {
        obj.name: {"kubernetes.io/metadata.name": obj.name, **labels_of(obj.document)}
        for obj in world.by_kind("Namespace")
    }


class _Network:
    """The pods and network policies of the environment, indexed by namespace."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.namespaces = _namespace_labels(world)
        self.pods: dict[str, list[Pods]] = {}
        # (namespace, label, text) -> the pods whose label has that text: those a matchLabels
        # term with that text can select (a fleet's policies each name a few of many pods)
        self.labelled: dict[tuple[str, str, str], list[Pods]] = {}
        for pod in workloads(world):
            self.pods.setdefault(pod.namespace, []).append(pod)
            for label, value in pod.labels.items():
                if isinstance(value, str):
                    self.labelled.setdefault((pod.namespace, label, value), []).append(pod)
        self.policies: dict[str, list[Obj]] = {}
        for policy in world.by_kind("NetworkPolicy"):
            self.policies.setdefault(policy.namespace, []).append(policy)
        self._guarding: dict[tuple[str, str, str], list[Obj]] = {}
        self._listening: dict[tuple[str, str], list[Span]] = {}

    def peer_pods(self, peer: Mapping[str, Any], home: str) -> tuple[list[Pods], list[str]]:
        """The pods a peer selects, and the namespaces it selects (for an existence check)."""
        if "namespaceSelector" in peer:
            chosen = [
                ns
                for ns, values in self.namespaces.items()
                if selects(peer["namespaceSelector"], values)
            ]
        else:
            chosen = [home]
        selector = peer.get("podSelector")
        found = [
            pod
            for ns in chosen
            for pod in self.candidates(ns, selector)
            if selector is None or selects(selector, pod.labels)
        ]
        return found, chosen

    def candidates(self, namespace: str, selector: Mapping[str, Any] | None) -> list[Pods]:
        """The pods of ``namespace`` that may match ``selector``, in their order: those with
        the rarest of its ``matchLabels`` pairs (a text matches only a label of that text),
        else all."""
        terms = (selector or {}).get("matchLabels") or {}
        if not terms or not all(isinstance(value, str) for value in terms.values()):
            return self.pods.get(namespace, [])
        return min(
            (self.labelled.get((namespace, key, value), []) for key, value in terms.items()),
            key=len,
        )

    def guarding(self, pod: Pods, kind: str) -> list[Obj]:
        """The policies that select ``pod`` for ``kind`` (Ingress or Egress) traffic."""
        key = (pod.namespace, pod.owner.name, kind)
        if key not in self._guarding:
            self._guarding[key] = [
                policy
                for policy in self.policies.get(pod.namespace, [])
                if selects((policy.document.get("spec") or {}).get("podSelector") or {}, pod.labels)
                and kind in ((policy.document.get("spec") or {}).get("policyTypes") or ["Ingress"])
            ]
        return self._guarding[key]

    def admits(self, policy: Obj, direction: str, other: Pods, receiver: Pods) -> list[Span] | None:
        """The ports of ``receiver`` on which ``policy`` lets traffic with ``other`` through
        that way (None: every port; empty: none)."""
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        spans: list[Span] = []
        for rule in (policy.document.get("spec") or {}).get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(
                "ipBlock" not in peer and other in self.peer_pods(peer, policy.namespace)[0]
                for peer in peers
            ):
                continue
            ports = rule_ports(rule, receiver)[0]
            if ports is None:
                return None
            spans += ports
        return spans

    def listening(self, pods: Pods) -> list[Span]:
        """The ports ``pods`` are known to listen on: their containers' ports and the numeric
        target ports of the Services that select them. Empty (unknown) when the containers
        declare none: a Service names one port the pods serve, not all of them."""
        key = (pods.namespace, pods.owner.name)
        if key not in self._listening:
            self._listening[key] = self._listens(pods)
        return self._listening[key]

    def _listens(self, pods: Pods) -> list[Span]:
        spans = [
            (str(port.get("protocol") or "TCP"), int(number), int(number))
            for port in container_ports(pods.owner)
            if isinstance(number := port.get("containerPort"), int)
        ]
        if not spans:
            return []
        for service in self.world.by_kind("Service"):
            spec = service.document.get("spec") or {}
            selector = spec.get("selector")
            if service.namespace != pods.namespace or not selector:
                continue
            if selects({"matchLabels": selector}, pods.labels):
                spans += [
                    (str(p.get("protocol") or "TCP"), int(target), int(target))
                    for p in spec.get("ports") or []
                    if isinstance(target := p.get("targetPort", p.get("port")), int)
                ]
        return spans

    def reciprocal(
        self,
        policy: Obj,
        direction: str,
        rule: Mapping[str, Any],
        selected: list[Pods],
        peers: list[Pods],
    ) -> Found:
        """If A may send to B, B must admit A (and the reverse), on each port the rule names,
        or the packets are dropped."""
        other_side = "Ingress" if direction == "Egress" else "Egress"
        verb = "admits" if other_side == "Ingress" else "lets it send to"
        verbs = "admit" if other_side == "Ingress" else "let it send to"
        allowed = "send to" if direction == "Egress" else "receive from"
        for peer in peers:
            guarding = self.guarding(peer, other_side)
            for pod in selected:
                if pod.owner is peer.owner:
                    continue
                if not guarding:
                    continue  # not isolated that way: everything is admitted
                receiver = peer if direction == "Egress" else pod
                admitted = [self.admits(g, other_side, pod, receiver) for g in guarding]
                if None in admitted:
                    continue
                spans = [span for found in admitted for span in found or []]
                if not spans:
                    yield (
                        policy,
                        "PLAT014",
                        (
                            f"lets {pod.name} {allowed} {peer.name}, but no NetworkPolicy of "
                            f"{peer.name} {verb} {pod.name}"
                        ),
                    )
                elif missing := _refused(rule_ports(rule, receiver)[0], spans):
                    yield (
                        policy,
                        "PLAT014",
                        (
                            f"lets {pod.name} {allowed} {peer.name} on {_spans(missing)}, but "
                            f"the NetworkPolicies of {peer.name} {verbs} {pod.name} only on "
                            f"{_spans(spans)}"
                        ),
                    )

    def deaf(
        self,
        policy: Obj,
        direction: str,
        rule: Mapping[str, Any],
        selected: list[Pods],
        peers: list[Pods],
    ) -> Found:
        """A rule's ports that none of the pods receiving that traffic listens on (by number,
        or a name no container of theirs has): what it allows there reaches nothing."""
        receivers = peers if direction == "Egress" else selected
        known = [r for r in receivers if self.listening(r)]
        if not rule.get("ports") or not known:
            return
        key = "egress to" if direction == "Egress" else "ingress of"
        names = ", ".join(sorted(r.name for r in known))
        found = [rule_ports(rule, r) for r in known]
        unnamed = set.intersection(*(set(names_) for _, names_ in found))
        if unnamed:
            quoted = ", ".join(repr(n) for n in sorted(unnamed))
            yield (
                policy,
                "PLAT014",
                f"{key} {names} allows port {quoted}, which no container there names",
            )
        listening = [span for r in known for span in self.listening(r)]
        missing = _refused([span for ports, _ in found for span in ports or []], listening)
        if missing:
            yield (
                policy,
                "PLAT014",
                (
                    f"{key} {names} allows {_spans(missing)}, which nothing there listens on "
                    f"(its pods listen on {_spans(listening)})"
                ),
            )


def container_ports(obj: Obj) -> list[Mapping[str, Any]]:
    spec = pod_spec(obj) or {}
    return [port for c in containers(spec) for port in c.get("ports") or []]


def rule_ports(rule: Mapping[str, Any], receiver: Pods) -> tuple[list[Span] | None, list[str]]:
    """The ports of ``receiver`` a policy rule allows (None: every port) and the port names it
    gives that no container of ``receiver`` has (a named port matches nothing then)."""
    entries = rule.get("ports") or []
    if not entries:
        return None, []
    spans: list[Span] = []
    unnamed: list[str] = []
    for entry in entries:
        protocol = str(entry.get("protocol") or "TCP")
        port = entry.get("port")
        if port is None:
            spans.append((protocol, *EVERY_PORT))
        elif isinstance(port, str) and not port.isdigit():
            numbers = [
                int(p["containerPort"])
                for p in container_ports(receiver.owner)
                if p.get("name") == port and str(p.get("protocol") or "TCP") == protocol
            ]
            spans += [(protocol, n, n) for n in numbers]
            if not numbers:
                unnamed.append(port)
        else:
            spans.append((protocol, int(port), int(entry.get("endPort") or port)))
    return spans, unnamed


def _refused(wanted: list[Span] | None, given: list[Span]) -> list[Span]:
    """The ports or ranges ``wanted`` names explicitly that overlap nothing in ``given``: a
    rule for every port, or a range that partly overlaps, is not a mistake of its own."""
    return [
        (protocol, low, high)
        for protocol, low, high in wanted or []
        if (low, high) != EVERY_PORT
        and not any(p == protocol and low <= last and high >= first for p, first, last in given)
    ]


def _spans(spans: list[Span]) -> str:
    return ", ".join(
        sorted(
            {f"{p} {a}" if a == b else f"{p} {a}-{b}" for p, a, b in spans},
        )
    )


def network_policies(world: World, stack: StackFacts | None) -> Found:
    network = _Network(world)
    for policy in world.by_kind("NetworkPolicy"):
        spec = policy.document.get("spec") or {}
        own = spec.get("podSelector") or {}
        selected = [
            pod for pod in network.candidates(policy.namespace, own) if selects(own, pod.labels)
        ]
        for direction, key, peers_key in (
            ("Egress", "egress", "to"),
            ("Ingress", "ingress", "from"),
        ):
            for rule in spec.get(key) or []:
                for peer in rule.get(peers_key) or []:
                    if "ipBlock" in peer:
                        yield from _ip_block(policy, peer["ipBlock"], stack)
                        continue
                    found, chosen = network.peer_pods(peer, policy.namespace)
                    if not chosen:
                        if not world.opaque(""):
                            message = f"{key} peer {_peer(peer)} selects no namespace"
                            yield policy, "PLAT014", message
                    elif not found:
                        if all(_known(world, ns) for ns in chosen):
                            yield policy, "PLAT014", f"{key} peer {_peer(peer)} selects no pods"
                    else:
                        yield from network.reciprocal(policy, direction, rule, selected, found)
                        yield from network.deaf(policy, direction, rule, selected, found)


def _peer(peer: Mapping[str, Any]) -> str:
    parts = []
    for key in ("namespaceSelector", "podSelector"):
        if key in peer:
            match = (peer[key] or {}).get("matchLabels") or {}
            parts.append(f"{key}({', '.join(f'{k}={v}' for k, v in match.items()) or 'all'})")
    return " ".join(parts)


def _ip_block(policy: Obj, block: Mapping[str, Any], stack: StackFacts | None) -> Found:
    if stack is None:
        return
    try:
        network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
    except ValueError:
        yield policy, "PLAT014", f"ipBlock {block.get('cidr')} is not a CIDR"
        return
    if not (isinstance(network, ipaddress.IPv4Network) and network.subnet_of(stack.vpc_cidr)):
        yield (
            policy,
            "PLAT014",
            (
                f"ipBlock {network} is outside the VPC ({stack.vpc_cidr}, {stack.source}): "
                "it matches no pod, node or load balancer of this environment"
            ),
        )


# --- hosts ---------------------------------------------------------------------------------


def covered(host: str, domain: str) -> bool:
    """Whether the certificate (``*.<domain>``, ``<domain>``) covers a host name."""
    for pattern in (name.format(domain=domain) for name in CERTIFICATE_NAMES):
        if pattern.startswith("*."):
            head, _, rest = host.partition(".")
            if head and "*" not in head and rest == pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def hosts(world: World, stack: StackFacts | None) -> Found:
    if stack is None:
        return
    for obj in world.by_kind("Ingress"):
        spec = obj.document.get("spec") or {}
        found = [str(rule["host"]) for rule in spec.get("rules") or [] if rule.get("host")]
        for tls in spec.get("tls") or []:
            found += [str(host) for host in tls.get("hosts") or []]
        dns = annotations_of(obj.document).get(EXTERNAL_DNS_HOSTNAME)
        found += [h.strip() for h in str(dns or "").split(",") if h.strip()]
        for host in sorted(set(found)):
            problems = []
            if not covered(host, stack.domain):
                problems.append(f"the certificate (*.{stack.domain})")
            if host != stack.domain and not host.endswith(f".{stack.domain}"):
                problems.append(f"external-dns's domain filter ({stack.domain})")
            if problems:
                yield (
                    obj,
                    "PLAT015",
                    (
                        f"host {host} is covered by neither {' nor '.join(problems)}"
                        if len(problems) > 1
                        else f"host {host} is not covered by {problems[0]}"
                    )
                    + f" ({stack.source} platform:domain)",
                )
