"""The add-ons' values answer the policy findings of their upstream charts; what stays excepted
is inherent to the component, named on its one resource, with why and who.

An exception of the old kind (``*/addons/<add-on>/*``, "upstream default; to be set") hides
every finding of an add-on, including the next one a chart bump brings: these tests refuse it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from platformctl.model import load_repo
from platformctl.policy.exceptions import PolicyException, load_exceptions
from platformctl.render import ADDONS_TARGET, Renderer
from tests.conftest import PROJECT_ROOT

EXCEPTIONS = PROJECT_ROOT / "environments/policy-exceptions.yaml"
# What a reason says when nobody decided anything: a default nobody looked at, a fix for later.
PLACEHOLDER = re.compile(r"upstream default|to be (set|fixed|done)|\bTODO\b|issue \d+", re.I)
WILDCARD = re.compile(r"[*?\[]")


def addon_names() -> set[str]:
    values = yaml.safe_load((PROJECT_ROOT / "charts/addons/values.yaml").read_text())
    return set(values["addons"])


def addon_exceptions(exceptions: list[PolicyException]) -> list[PolicyException]:
    """Exceptions aimed at an add-on's chart (``env/addons/<add-on>...``), whatever their
    shape; ``env/addons/Kind/name`` is the add-ons chart's own object, not an add-on's."""
    names = addon_names()
    found = []
    for exception in exceptions:
        parts = exception.target.split("/")
        if len(parts) >= 3 and parts[1] == ADDONS_TARGET and (parts[2] in names or len(parts) != 4):
            found.append(exception)
    return found


def too_broad(exceptions: list[PolicyException]) -> list[str]:
    """Add-on exceptions that do not name a known add-on and one resource of it."""
    names = addon_names()
    found = []
    for exception in addon_exceptions(exceptions):
        parts = exception.target.split("/")
        if len(parts) != 5 or parts[2] not in names or WILDCARD.search("/".join(parts[2:])):
            found.append(f"{exception.check} {exception.target}")
    return found


def without_reason(exceptions: list[PolicyException]) -> list[str]:
    """Add-on exceptions whose reason is a placeholder, or names no owner after a ';'."""
    found = []
    for exception in addon_exceptions(exceptions):
        reason, _, owner = exception.reason.rpartition(";")
        if PLACEHOLDER.search(exception.reason) or not reason.strip() or not owner.strip():
            found.append(f"{exception.check} {exception.target}")
    return found


def test_addon_exceptions_name_one_resource_of_a_known_addon() -> None:
    exceptions = load_exceptions(EXCEPTIONS)
    assert addon_exceptions(exceptions), "no add-on exceptions found: has the target shape changed?"
    assert not too_broad(exceptions), (
        "an add-on exception must name the add-on and the one resource it concerns "
        "(<env>/addons/<add-on>/<Kind>/<name>):\n" + "\n".join(too_broad(exceptions))
    )


def test_addon_exception_reasons_say_why_and_who() -> None:
    exceptions = load_exceptions(EXCEPTIONS)
    assert not without_reason(exceptions), (
        "an add-on exception's reason says why the finding is inherent (or which chart value "
        "is missing), then '; <owner>'; not that it is an upstream default to be fixed:\n"
        + "\n".join(without_reason(exceptions))
    )


def test_the_exceptions_this_repository_had_before_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy-exceptions.yaml"
    path.write_text(
        "exceptions:\n"
        "  - check: CKV_K8S_15\n"
        '    target: "*/addons/fluent-bit/*"\n'
        '    reason: "fluent-bit 0.58.1 upstream default; to be set in charts/addons (issue 15), '
        'platform team"\n'
        "    expires: 2027-01-31\n"
        "  - check: CKV_K8S_38\n"
        '    target: "*/addons/fluent-bit"\n'
        '    reason: "its kubernetes filter reads pods from the API server; platform team"\n'
        "    expires: 2027-01-31\n"
        "  - check: CKV_K8S_38\n"
        '    target: "*/addons/fluent-bit/DaemonSet/*"\n'
        '    reason: "its kubernetes filter reads pods from the API server; platform team"\n'
        "    expires: 2027-01-31\n"
        "  - check: CKV_K8S_38\n"
        '    target: "*/addons/fluentbit/DaemonSet/fluent-bit"\n'
        '    reason: "its kubernetes filter reads pods from the API server, platform team"\n'
        "    expires: 2027-01-31\n"
        "  - check: CKV_K8S_8\n"
        '    target: "*/addons/Deployment/x"\n'
        "    reason: \"the add-ons chart's own object, not an add-on's\"\n"
        "    expires: 2027-01-31\n"
    )
    exceptions = load_exceptions(path)
    assert too_broad(exceptions) == [
        "CKV_K8S_15 */addons/fluent-bit/*",
        "CKV_K8S_38 */addons/fluent-bit",
        "CKV_K8S_38 */addons/fluent-bit/DaemonSet/*",
        "CKV_K8S_38 */addons/fluentbit/DaemonSet/fluent-bit",
    ]
    assert without_reason(exceptions) == [
        "CKV_K8S_15 */addons/fluent-bit/*",
        "CKV_K8S_38 */addons/fluentbit/DaemonSet/fluent-bit",
    ]


def test_addon_containers_are_restricted_where_their_namespace_is() -> None:
    """What the values set, read back from the rendered charts: in a namespace at the
    restricted Pod Security level (and in kube-system, which enforces none) every container
    drops every capability, cannot escalate and runs as non-root with RuntimeDefault seccomp,
    and every add-on container re-pulls its pinned tag and has requests and limits."""
    loaded = load_repo(PROJECT_ROOT)
    values = yaml.safe_load((PROJECT_ROOT / "charts/addons/values.yaml").read_text())["addons"]
    renderer = Renderer(loaded)
    problems = []
    for job in renderer.addon_chart_jobs(loaded.environment("production")):
        addon = job.name.rsplit("/", 1)[-1]
        # kube-system's add-ons declare what EKS enforces there (nothing: privileged), and are
        # held to restricted here, by this test, since no admission does it.
        restricted = (
            values[addon].get("podSecurity") == "restricted"
            or values[addon]["namespace"] == "kube-system"
        )
        for document in renderer.render(job).documents:
            spec = ((document.get("spec") or {}).get("template") or {}).get("spec")
            if document.get("kind") not in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
                continue
            assert spec is not None
            pod = spec.get("securityContext") or {}
            where = f"{addon} {document['kind']}/{document['metadata']['name']}"
            for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                context = {**pod, **(container.get("securityContext") or {})}
                name = f"{where} container {container['name']}"
                resources = container.get("resources") or {}
                if not {"cpu", "memory"} <= set(resources.get("limits") or {}) or not {
                    "cpu",
                    "memory",
                } <= set(resources.get("requests") or {}):
                    problems.append(f"{name}: requests and limits")
                if container.get("imagePullPolicy") != "Always":
                    problems.append(f"{name}: imagePullPolicy {container.get('imagePullPolicy')}")
                if not restricted:
                    continue
                if context.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{name}: allowPrivilegeEscalation")
                if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{name}: capabilities")
                if context.get("runAsNonRoot") is not True:
                    problems.append(f"{name}: runAsNonRoot")
                if (context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                    problems.append(f"{name}: seccompProfile")
    assert not problems, "\n".join(problems)
