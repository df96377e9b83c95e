"""Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards, the
``latest`` version as of Kubernetes 1.33), evaluated like the PodSecurity admission plugin:
every pod template (and the pods prometheus-operator makes from a Prometheus or Alertmanager,
which no manifest holds) against its namespace's ``enforce`` level, findings named by the plugin's
check IDs (k8s.io/pod-security-admission/policy). A pod that fails is refused when the
controller creates it, so the workload never becomes Healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from platformctl.twin.sync import pod_spec
from platformctl.twin.world import Obj, World, annotations_of, labels_of

ENFORCE = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPABILITIES = frozenset(
    [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ]
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
Pod = Mapping[str, Any]
Check = Callable[[Pod, list[Mapping[str, Any]], Mapping[str, Any]], list[str]]


def _all_containers(pod: Pod) -> list[Mapping[str, Any]]:
    return [
        c
        for group in ("initContainers", "containers", "ephemeralContainers")
        for c in pod.get(group) or []
    ]


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


def host_namespaces(pod: Pod, _: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]


def privileged(_: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [f'container "{c.get("name")}"' for c in containers if _context(c).get("privileged")]


def capabilities_baseline(
    _: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]
) -> list[str]:
    found = []
    for c in containers:
        added = (
            set((_context(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        )
        if added:
            found.append(f'container "{c.get("name")}" adds {", ".join(sorted(added))}')
    return found


def host_path_volumes(pod: Pod, _: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [f'volume "{v.get("name")}"' for v in pod.get("volumes") or [] if "hostPath" in v]


def host_ports(_: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [
        f'container "{c.get("name")}" hostPort {p["hostPort"]}'
        for c in containers
        for p in c.get("ports") or []
        if p.get("hostPort")
    ]


def _settings(
    pod: Pod, containers: list[Mapping[str, Any]], key: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """One security setting at pod level and in each container, with where it is."""
    found = [("pod", (pod.get("securityContext") or {}).get(key) or {})]
    return found + [
        (f'container "{c.get("name")}"', _context(c).get(key) or {}) for c in containers
    ]


def app_armor_profile(
    pod: Pod, containers: list[Mapping[str, Any]], meta: Mapping[str, Any]
) -> list[str]:
    found = []
    for where, profile in _settings(pod, containers, "appArmorProfile"):
        if profile.get("type") not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{where} appArmorProfile {profile.get('type')}")
    for key, value in (meta.get("annotations") or {}).items():
        if (
            str(key).startswith("container.apparmor.security.beta.kubernetes.io/")
            and value != "runtime/default"
            and not str(value).startswith("localhost/")
        ):
            found.append(f"annotation {key}={value}")
    return found


def se_linux_options(
    pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]
) -> list[str]:
    found = []
    for where, options in _settings(pod, containers, "seLinuxOptions"):
        if (
            options.get("type", "") not in SELINUX_TYPES
            or options.get("user")
            or options.get("role")
        ):
            found.append(f"{where} seLinuxOptions")
    return found


def proc_mount(_: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [
        f'container "{c.get("name")}" procMount {_context(c)["procMount"]}'
        for c in containers
        if _context(c).get("procMount") not in (None, "Default")
    ]


def _seccomp_types(pod: Pod, containers: list[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    return [(where, p.get("type")) for where, p in _settings(pod, containers, "seccompProfile")]


def seccomp_profile_baseline(
    pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]
) -> list[str]:
    return [
        f"{where} seccompProfile.type=Unconfined"
        for where, kind in _seccomp_types(pod, containers)
        if kind == "Unconfined"
    ]


def sysctls(pod: Pod, _: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    return [
        str(s.get("name"))
        for s in (pod.get("securityContext") or {}).get("sysctls") or []
        if s.get("name") not in SAFE_SYSCTLS
    ]


def windows_host_process(
    pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]
) -> list[str]:
    contexts = [pod.get("securityContext") or {}] + [_context(c) for c in containers]
    return [
        "hostProcess=true"
        for context in contexts
        if (context.get("windowsOptions") or {}).get("hostProcess")
    ][:1]


def restricted_volumes(pod: Pod, _: list[Mapping[str, Any]], __: Mapping[str, Any]) -> list[str]:
    found = []
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if kinds - RESTRICTED_VOLUMES:
            found.append(f'volume "{volume.get("name")}" uses {", ".join(sorted(kinds))}')
    return found


def allow_privilege_escalation(
    _: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]
) -> list[str]:
    return [
        f'container "{c.get("name")}" must set securityContext.allowPrivilegeEscalation=false'
        for c in containers
        if _context(c).get("allowPrivilegeEscalation") is not False
    ]


def run_as_non_root(
    pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]
) -> list[str]:
    pod_level = (pod.get("securityContext") or {}).get("runAsNonRoot")
    found = []
    for c in containers:
        value = _context(c).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            found.append(f'container "{c.get("name")}" must set securityContext.runAsNonRoot=true')
    if pod_level is False:
        found.insert(0, "pod must not set securityContext.runAsNonRoot=false")
    return found


def run_as_user(pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]) -> list[str]:
    found = []
    if (pod.get("securityContext") or {}).get("runAsUser") == 0:
        found.append("pod must not set runAsUser=0")
    found += [
        f'container "{c.get("name")}" must not set runAsUser=0'
        for c in containers
        if _context(c).get("runAsUser") == 0
    ]
    return found


def seccomp_profile_restricted(
    pod: Pod, containers: list[Mapping[str, Any]], _: Mapping[str, Any]
) -> list[str]:
    pod_type = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    found = []
    for c in containers:
        kind = (_context(c).get("seccompProfile") or {}).get("type") or pod_type
        if kind not in ("RuntimeDefault", "Localhost"):
            found.append(
                f'container "{c.get("name")}" must set securityContext.seccompProfile.type to '
                '"RuntimeDefault" or "Localhost"'
            )
    return found


def capabilities_restricted(
    _: Pod, containers: list[Mapping[str, Any]], __: Mapping[str, Any]
) -> list[str]:
    found = []
    for c in containers:
        capabilities = _context(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(
                f'container "{c.get("name")}" must set securityContext.capabilities.drop=["ALL"]'
            )
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            found.append(f'container "{c.get("name")}" must not add {", ".join(sorted(added))}')
    return found


BASELINE: tuple[tuple[str, Check], ...] = (
    ("hostNamespaces", host_namespaces),
    ("privileged", privileged),
    ("capabilities_baseline", capabilities_baseline),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("appArmorProfile", app_armor_profile),
    ("seLinuxOptions", se_linux_options),
    ("procMount", proc_mount),
    ("seccompProfile_baseline", seccomp_profile_baseline),
    ("sysctls", sysctls),
    ("windowsHostProcess", windows_host_process),
)
RESTRICTED: tuple[tuple[str, Check], ...] = (
    ("restrictedVolumes", restricted_volumes),
    ("allowPrivilegeEscalation", allow_privilege_escalation),
    ("runAsNonRoot", run_as_non_root),
    ("runAsUser", run_as_user),
    ("seccompProfile_restricted", seccomp_profile_restricted),
    ("capabilities_restricted", capabilities_restricted),
)


def level_of(world: World, namespace: str) -> str:
    """The namespace's enforce level; a namespace without the label (or unknown) is privileged."""
    for obj in world.find("Namespace", "", namespace):
        level = str(labels_of(obj.document).get(ENFORCE, "privileged"))
        return level if level in LEVELS else "restricted"
    return "privileged"


def evaluate(pod: Pod, meta: Mapping[str, Any], level: str) -> Iterator[tuple[str, str]]:
    checks = BASELINE if level in ("baseline", "restricted") else ()
    if level == "restricted":
        checks += RESTRICTED
    containers = _all_containers(pod)
    for check_id, check in checks:
        problems = check(pod, containers, meta)
        if problems:
            yield check_id, "; ".join(problems)


# prometheus-operator's workloads: the StatefulSet it makes from a Prometheus or Alertmanager has
# the containers it names in the CRD (spec.containers / spec.initContainers: "The names of
# containers managed by the operator are ..."), each with the context the operator gives them
# (v0.93.1: read-only root, no privilege escalation, every capability dropped; nothing about the
# user, which comes from the pod), patched by the resource's own containers of the same name
# (a strategic merge), then its other containers. The pod's context is spec.securityContext
# ("defaults to the default PodSecurityContext": empty), its volumes the operator's (config
# Secrets and ConfigMaps, emptyDir or the storage's PVC) plus spec.volumes.
OPERATED = {
    "Prometheus": ("prometheus", "config-reloader"),
    "Alertmanager": ("alertmanager", "config-reloader"),
}
OPERATED_INIT = ("init-config-reloader",)
OPERATOR_CONTAINER_CONTEXT: Mapping[str, Any] = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A strategic merge patch of one container, as far as Pod Security reads it: maps merge,
    lists and values replace."""
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _operated_containers(
    names: tuple[str, ...], patches: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {
        name: {"name": name, "securityContext": dict(OPERATOR_CONTAINER_CONTEXT)} for name in names
    }
    for patch in patches:
        name = str(patch.get("name", ""))
        found[name] = _merge(found.get(name, {}), patch)
    return list(found.values())


def operated_pod(obj: Obj) -> tuple[Pod, Mapping[str, Any]] | None:
    """The pod template prometheus-operator makes from a Prometheus or Alertmanager, and its
    metadata (spec.podMetadata); None for anything else."""
    if obj.group != "monitoring.coreos.com" or obj.kind not in OPERATED:
        return None
    spec: Mapping[str, Any] = obj.document.get("spec") or {}
    names = OPERATED[obj.kind] + (("thanos-sidecar",) if spec.get("thanos") else ())
    pod = {
        "securityContext": spec.get("securityContext") or {},
        "hostNetwork": bool(spec.get("hostNetwork")),
        "hostUsers": spec.get("hostUsers"),
        "volumes": list(spec.get("volumes") or []),
        "containers": _operated_containers(names, list(spec.get("containers") or [])),
        "initContainers": _operated_containers(
            OPERATED_INIT, list(spec.get("initContainers") or [])
        ),
    }
    return {k: v for k, v in pod.items() if v is not None}, spec.get("podMetadata") or {}


def pod_security(world: World) -> Iterator[tuple[Obj, str, str]]:
    for obj in world.objects:
        if not obj.namespace:
            continue
        spec = pod_spec(obj)
        whose = "pods"
        meta = ((obj.document.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if spec is None:
            operated = operated_pod(obj)
            if operated is None:
                continue
            spec, meta = operated
            whose = "the pods prometheus-operator makes from it"
        level = level_of(world, obj.namespace)
        for check_id, detail in evaluate(spec, meta, level):
            yield (
                obj,
                "PLAT017",
                (
                    f'{whose} would be refused by PodSecurity "{level}:latest" in namespace '
                    f"{obj.namespace}: {check_id}: {detail}"
                ),
            )


DECLARED = "platform.acme.io/pod-security"


def declared_levels(world: World) -> Iterator[tuple[Obj, str, str]]:
    """An add-on Application's declared Pod Security level (``platform.acme.io/pod-security``)
    held to the level its destination namespace enforces, where no rendered Namespace of this
    environment sets it (EKS's own, or one nobody labels): there the declaration would claim an
    enforcement that does not happen. In a namespace this environment renders, the add-ons chart
    labels it with the strictest level its add-ons need; a pod stricter than the level is fine."""
    for obj in world.by_kind("Application"):
        declared = str(annotations_of(obj.document).get(DECLARED, ""))
        if not declared:
            continue
        destination = (obj.document.get("spec") or {}).get("destination") or {}
        namespace = str(destination.get("namespace") or "")
        managed = any(ns.app is not None for ns in world.find("Namespace", "", namespace))
        enforced = level_of(world, namespace)
        if managed or declared == enforced:
            continue
        yield (
            obj,
            "PLAT017",
            f'declares Pod Security "{declared}" for namespace {namespace}, which no Namespace '
            f'of this environment labels: it enforces "{enforced}" there, so nothing holds its '
            f'pods to "{declared}" (declare "{enforced}", and check the pods another way)',
        )
