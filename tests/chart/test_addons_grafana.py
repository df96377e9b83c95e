"""Grafana as Argo CD deploys it (the vendored kube-prometheus-stack rendered with the values the
add-ons' Application passes): where its database is, and how many pods share it."""

from __future__ import annotations

import configparser
from pathlib import PurePosixPath
from typing import Any

import pytest

from platformctl.model import load_repo
from platformctl.render import Renderer
from tests.conftest import PROJECT_ROOT


def grafana_ini(text: str) -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text)
    return ini


def database(container: dict[str, Any], ini: configparser.ConfigParser) -> str:
    """Grafana's database type as it resolves it: GF_DATABASE_TYPE (or the scheme of
    GF_DATABASE_URL), then grafana.ini's [database] type, then its default, sqlite3."""
    env = {e["name"]: e.get("value", "") for e in container.get("env") or [] if "name" in e}
    if env.get("GF_DATABASE_TYPE"):
        return env["GF_DATABASE_TYPE"]
    url = env.get("GF_DATABASE_URL") or ini.get("database", "url", fallback="")
    if url:
        return url.split("://", 1)[0]
    return ini.get("database", "type", fallback="sqlite3")


def grafanas(environment: str) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """Each Grafana workload: its Deployment, its grafana container, its grafana.ini."""
    repo = load_repo(PROJECT_ROOT)
    renderer = Renderer(repo)
    found = []
    for job in renderer.addon_chart_jobs(repo.environment(environment)):
        documents = renderer.render(job).documents
        configmaps = {
            d["metadata"]["name"]: d.get("data") or {}
            for d in documents
            if d["kind"] == "ConfigMap"
        }
        for document in documents:
            if document["kind"] not in {"Deployment", "StatefulSet"}:
                continue
            pod = document["spec"]["template"]["spec"]
            for container in pod["containers"]:
                if "grafana/grafana" not in container["image"]:
                    continue
                volumes = {v["name"]: v for v in pod.get("volumes") or []}
                (mount,) = [
                    m
                    for m in container["volumeMounts"]
                    if m["mountPath"] == "/etc/grafana/grafana.ini"
                ]
                configmap = volumes[mount["name"]]["configMap"]["name"]
                text = configmaps[configmap][mount.get("subPath", "grafana.ini")]
                found.append((document, container, text))
    return found


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_a_sqlite_grafana_is_one_pod_on_a_persistent_volume(environment: str) -> None:
    """Two Grafana pods each with their own SQLite file behind an ALB without sticky sessions
    log users out at random and keep diverging state; on an emptyDir the one pod loses it all
    on every restart."""
    found = grafanas(environment)
    assert found, "no Grafana rendered"
    for workload, container, text in found:
        ini = grafana_ini(text)
        if database(container, ini) != "sqlite3":
            continue
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        assert workload["spec"].get("replicas", 1) == 1, f"{name}: replicas with SQLite each"
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        data = PurePosixPath(ini.get("paths", "data", fallback="/var/lib/grafana"))
        mounts = [
            m
            for m in container["volumeMounts"]
            if data == PurePosixPath(m["mountPath"])
            or PurePosixPath(m["mountPath"]) in data.parents
        ]
        (mount,) = sorted(mounts, key=lambda m: len(m["mountPath"]))[-1:]
        assert "persistentVolumeClaim" in volumes[mount["name"]], (
            f"{name}: the SQLite database under {data} is on {volumes[mount['name']]}"
        )
        assert workload["spec"].get("strategy", {}).get("type") == "Recreate", (
            f"{name}: a rolling update waits for a ReadWriteOnce volume the old pod holds"
        )


def test_the_database_type_resolves_as_grafana_does() -> None:
    assert database({}, grafana_ini("[server]\nx = 1\n")) == "sqlite3"
    assert database({}, grafana_ini("[database]\ntype = postgres\n")) == "postgres"
    assert database({"env": [{"name": "GF_DATABASE_TYPE", "value": "mysql"}]}, grafana_ini("")) == (
        "mysql"
    )
    assert database({}, grafana_ini("[database]\nurl = postgres://h/db\n")) == "postgres"
