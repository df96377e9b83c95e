"""Fluent Bit as Argo CD deploys it: the vendored chart rendered with the values the add-ons'
Application passes, its configuration read back from the ConfigMap the pods mount."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.render import Renderer
from tests.conftest import PROJECT_ROOT


def sections(conf: str) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic configuration: `[SECTION]` headers, then `Key Value` lines (keys are
    case-insensitive)."""
    found: list[tuple[str, dict[str, str]]] = []
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z_]+)\]", line)
        if header:
            found.append((header.group(1), {}))
            continue
        assert not line.startswith("@"), f"an include or directive this test cannot follow: {line}"
        key, _, value = line.partition(" ")
        found[-1][1][key.lower()] = value.strip()
    return found


def matches(pattern: str, tag: str) -> bool:
    """Fluent Bit's router (flb_router_match): `*` matches any run of characters, everything
    else itself."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), tag) is not None


def concrete(tag: str) -> str:
    """A record's tag from an input's `Tag`: tail puts the file's path (slashes as dots) where
    the `*` is, systemd the unit's name."""
    return tag.replace("*", "var.log.containers.pod_ns_container-0123.log")


def fluent_bit(environment: str) -> tuple[dict[str, Any], dict[str, Any]]:
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    (job,) = [
        j
        for j in renderer.addon_chart_jobs(repo.environment(environment))
        if j.name.endswith("/fluent-bit")
    ]
    documents = renderer.render(job).documents
    (daemonset,) = [d for d in documents if d["kind"] == "DaemonSet"]
    (configmap,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and "fluent-bit.conf" in (d.get("data") or {})
    ]
    return configmap, daemonset


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_every_input_reaches_an_output(environment: str) -> None:
    """A record no output matches is read and discarded: the chart's journal input (host.*)
    did not reach the CloudWatch output, which matched kube.* only."""
    configmap, _ = fluent_bit(environment)
    parsed = sections(configmap["data"]["fluent-bit.conf"])
    inputs = [s for kind, s in parsed if kind == "INPUT"]
    outputs = [s for kind, s in parsed if kind == "OUTPUT"]
    assert inputs
    assert outputs
    assert {o["name"] for o in outputs} == {"cloudwatch_logs"}
    for section in inputs:
        tag = concrete(section.get("tag", section["name"]))
        assert any(matches(o["match"], tag) for o in outputs if "match" in o), (
            f"{section['name']} input's records ({section.get('tag')}) reach no output"
        )
        assert all("match_regex" not in o for o in outputs)


def test_the_matcher_is_fluent_bits() -> None:
    assert matches("kube.*", "kube.var.log.containers.a.log")
    assert not matches("kube.*", "host.kubelet.service")
    assert matches("*", "anything")
    assert not matches("kube.?", "kube.a")


@pytest.mark.parametrize("environment", ["dev", "production"])
def test_inputs_keep_their_position_on_a_writable_host_path(environment: str) -> None:
    """Without a position database a restarted pod starts at the end of every file again (what
    was written meanwhile is lost); in the container's filesystem (read-only here) or an
    emptyDir it would not outlive the pod. Writable is that directory only."""
    configmap, daemonset = fluent_bit(environment)
    pod = daemonset["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = [c for c in pod["containers"] if c["name"] == "fluent-bit"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in container["volumeMounts"]
        if not m.get("readOnly") and "hostPath" in volumes[m["name"]]
    }
    assert set(writable) == {"/var/fluent-bit/state"}, writable
    inputs = [s for kind, s in sections(configmap["data"]["fluent-bit.conf"]) if kind == "INPUT"]
    for section in inputs:
        if section["name"] not in {"tail", "systemd"}:
            continue
        assert "db" in section, f"{section['name']} input without DB"
        directory = str(PurePosixPath(section["db"]).parent)
        assert directory in writable, f"{section['db']} is not on a writable host path"
        assert writable[directory]["hostPath"]["type"] == "DirectoryOrCreate"
