"""Evaluate the gates of a promotion's target stage for every service it changes.

Every declared gate runs for every service, so one run shows all that is wrong, not the first
thing. Local gates (freeze, soak) run first; the network gates of different services run in
parallel threads. A gate that raises becomes a failed result naming its endpoint (fail
closed). An overridden gate is not asked; it is recorded with the reason instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache

from platformctl.argocd import ArgoCD
from platformctl.errors import InputError, PlatformError
from platformctl.gates.budget import TargetBudgets
from platformctl.gates.calendar import check_freeze, check_soak
from platformctl.gates.config import GATE_ORDER, NETWORK_GATES
from platformctl.gates.health import check_argocd, check_slo
from platformctl.gates.images import Registries, check_registry, check_signature
from platformctl.gates.results import GateReport, GateResult, Verdict
from platformctl.git import Git, GitError
from platformctl.httpapi import EndpointUnreachable
from platformctl.model import Endpoint, Environment, Image, Release, Repo
from platformctl.prometheus import Prometheus

MAX_THREADS = 8


@dataclass(frozen=True)
class GateOptions:
    overrides: Collection[str] = ()
    reason: str | None = None
    # --dry-run --offline: network gates are reported as skipped, not asked
    offline: bool = False
    now: dt.datetime | None = None
    # promote --all: the soak verdict on the release set it takes (release.set_soak), which
    # stands for every service's (a set's images ran together; each may have arrived earlier)
    set_soak: GateResult | None = None


def check_overrides(target: Environment, overrides: Collection[str], reason: str | None) -> None:
    declared = target.gates.names
    for gate in overrides:
        if gate == "policy":
            raise InputError(
                "--override policy: the policy gate cannot be overridden",
                hint="fix the finding, or accept it with a dated entry in "
                "environments/policy-exceptions.yaml",
            )
        if gate not in GATE_ORDER:
            raise InputError(
                f"--override {gate}: no such gate", hint=f"gates: {', '.join(GATE_ORDER)}"
            )
        if gate not in declared:
            raise InputError(
                f"--override {gate}: {target.name} does not require that gate",
                hint=f"its gates: {', '.join(declared) or 'none'}",
            )
    if overrides and not reason:
        raise InputError("--override needs --reason TEXT (it is recorded in the commit)")


def _endpoint(endpoint: Endpoint | None, kind: str, source: Environment) -> Endpoint:
    if endpoint is None:  # the model checks the stage before; --from may name another
        raise InputError(
            f"{source.name} has no endpoints.{kind}",
            hint=f"add it to {source.settings_file.name} of {source.name}",
        )
    return endpoint


def _failure(gate: str, service: str | None, error: PlatformError) -> GateResult:
    """A gate that could not decide fails closed, and says why (the endpoint, if any)."""
    unreachable = isinstance(error, EndpointUnreachable)
    return GateResult(gate, service, Verdict.failed, str(error), unreachable=unreachable)


Ask = Callable[[str, Release, Image], tuple[list[GateResult], Image]]


def _ask(run: Ask, gate: str, release: Release, image: Image) -> tuple[list[GateResult], Image]:
    """One gate for one service; what it could not decide fails closed. A git failure is the
    clone's problem, not the gate's (overriding the gate would not help): it is raised."""
    try:
        return run(gate, release, image)
    except GitError:
        raise
    except PlatformError as error:
        return [_failure(gate, release.service, error)], image


def evaluate(
    repo: Repo,
    target: Environment,
    source: Environment,
    changes: list[tuple[str, Image]],
    options: GateOptions,
) -> tuple[GateReport, dict[str, Image]]:
    """The report, and per service the image to promote (registry may fill in the digest)."""
    check_overrides(target, options.overrides, options.reason)
    now = options.now or dt.datetime.now(dt.UTC)
    gates = target.gates
    reason = options.reason or ""
    report = GateReport(target.name, overrides=dict.fromkeys(options.overrides, reason))
    images = dict(changes)
    if not changes:
        return report, images

    def skipped(gate: str, service: str | None) -> GateResult | None:
        if gate in options.overrides:
            return GateResult(gate, service, Verdict.overridden, reason)
        if options.offline and gate in NETWORK_GATES:
            return GateResult(gate, service, Verdict.skipped, "offline: not asked")
        return None

    if gates.freeze is not None:
        report.results.append(skipped("freeze", None) or check_freeze(gates.freeze, now))
    git = Git(repo.root)
    registries = Registries()
    # clients are made on first use, inside a gate, so a missing token fails that gate only
    argocd = cache(lambda: ArgoCD(_endpoint(source.argocd, "argocd", source)))
    prometheus = cache(lambda: Prometheus(_endpoint(source.prometheus, "prometheus", source)))
    # the budget gate asks the target's own Prometheus about what the target runs now
    budgets = TargetBudgets(
        repo, target, cache(lambda: Prometheus(_endpoint(target.prometheus, "prometheus", target)))
    )

    def run(gate: str, release: Release, image: Image) -> tuple[list[GateResult], Image]:
        service = release.service
        if gate == "soak":
            assert gates.soak is not None
            if options.set_soak is not None:
                return [replace(options.set_soak, service=service)], image
            return [check_soak(git, release, gates.soak, now)], image
        if gate == "registry":
            result, image = check_registry(registries, service, image)
            return [result], image
        if gate == "signature":
            keys = gates.signature_keys or ()
            return [check_signature(registries, service, image, keys)], image
        if gate == "argocd":
            return [check_argocd(argocd(), git, release)], image
        if gate == "budget":
            assert gates.budget is not None
            return budgets.check(service, gates.budget, now), image
        assert gates.slo is not None
        return check_slo(prometheus(), gates.slo, release, now), image

    def per_service(service: str) -> tuple[list[GateResult], Image]:
        release = repo.release(service, source.name)
        image = images[service]
        results: list[GateResult] = []
        for gate in gates.names:
            if gate == "freeze":
                continue
            instead = skipped(gate, service)
            if instead is not None:
                results.append(instead)
                continue
            found, image = _ask(run, gate, release, image)
            results += found
        return results, image

    services = [service for service, _ in changes]
    network = any(g in NETWORK_GATES for g in gates.names) and not options.offline
    threads = min(MAX_THREADS, len(services)) if network else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for service, (results, image) in zip(
            services, pool.map(per_service, services), strict=True
        ):
            report.results += results
            images[service] = image
    return report, images
