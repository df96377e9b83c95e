"""checkov in its worker process, as the CLI runs it (checkov is not imported there yet), and
in batches in-process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from platformctl.cachefile import CACHE_DIR
from platformctl.model import load_repo
from platformctl.policy import checkov_engine
from platformctl.policy.checkov_engine import CHECK_IDS_FILE
from platformctl.render import Renderer
from tests.conftest import PLATFORM_BINARY
from tests.policy.test_verify import writable_root


def verify_json(repo: Path, *args: str, seed: str = "0") -> tuple[int, dict[str, object]]:
    result = subprocess.run(
        [PLATFORM_BINARY, "--repo", str(repo), "verify", "--output", "json", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    return result.returncode, json.loads(result.stdout)


def test_worker_reports_checkov_failures_with_their_target(repo: Path) -> None:
    service = load_repo(repo).services[0]
    writable_root(repo)
    code, report = verify_json(repo, "--env", "dev", "--service", service)
    assert code == 1
    assert report["checked_by_checkov"] == 1
    findings = report["findings"]
    assert isinstance(findings, list)
    assert (f"dev/{service}", "CKV_K8S_22", "checkov") in {
        (f["target"], f["check"], f["engine"]) for f in findings
    }


def test_worker_checks_every_target(repo: Path) -> None:
    code, report = verify_json(repo, "--no-cache")
    assert code == 0, report
    # every target but the environments' Argo CD objects (they have no pods)
    assert report["checked_by_checkov"] == report["targets"] - len(load_repo(repo).environments)
    assert report["findings"] == []


def test_batches_keep_each_failure_with_its_target(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writable_root(repo)
    monkeypatch.setattr(checkov_engine, "BATCH", 2)
    loaded = load_repo(repo)
    renderer = Renderer(loaded)
    targets = {r.key: renderer.release(r).documents for r in loaded.select(["dev"], [])}
    run = checkov_engine.CheckovRun()
    for key, documents in targets.items():
        run.add(key, documents)
    failures = run.results()
    assert set(failures) == set(targets)
    for key, found in failures.items():
        assert [f.check for f in found] == ["CKV_K8S_22"], key


@pytest.mark.usefixtures("own_cache")
def test_the_next_process_answers_from_the_cache(repo: Path) -> None:
    """Cache keys must not depend on a process's hash seed (set order)."""
    assert verify_json(repo, seed="1")[1]["cache_hits"] == 0
    code, report = verify_json(repo, seed="2")
    assert code == 0
    assert report["cache_hits"] == report["targets"] > 0
    assert report["checked_by_checkov"] == 0


@pytest.mark.usefixtures("own_cache")
def test_a_gate_that_ran_checkov_keeps_its_check_ids(repo: Path) -> None:
    """checkov's worker has imported its registry: the ids it reports are kept, so a later
    promotion that explains an unused exception does not import the registry again (the
    first promotion after CI's `platform verify` paid ~0.1 s in a started worker for it)."""
    loaded = load_repo(repo)
    loaded.exceptions_file.unlink(missing_ok=True)  # none unused: none for `_explained` to ask
    service = loaded.services[0]
    code, report = verify_json(repo, "--env", "dev", "--service", service, "--no-cache")
    assert code == 0, report
    assert not (repo / CACHE_DIR / CHECK_IDS_FILE).exists()  # --no-cache writes nothing
    code, report = verify_json(repo, "--env", "dev", "--service", service)
    assert (code, report["checked_by_checkov"]) == (0, 1), report
    kept = json.loads((repo / CACHE_DIR / CHECK_IDS_FILE).read_text())["entries"]["ids"]
    assert set(kept) == checkov_engine.check_ids()


def _web(policy: bool) -> list[dict[str, object]]:
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
            },
        },
    }
    network_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web"},
        "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"]},
    }
    return [deployment, network_policy] if policy else [deployment]


@pytest.mark.parametrize("order", ["uncovered-first", "covered-first"])
def test_a_graph_check_does_not_see_another_targets_resources(order: str) -> None:
    """Two environments' copies of one workload, only one with its NetworkPolicy: each keeps
    its own CKV2_K8S_6 verdict whichever targets share a checkov run."""
    run = checkov_engine.CheckovRun()
    targets = [("uncovered", _web(False)), ("covered", _web(True))]
    for key, documents in targets if order == "uncovered-first" else targets[::-1]:
        run.add(key, documents)
    results = run.results()
    graph = {key: {f.check for f in found} & {"CKV2_K8S_6"} for key, found in results.items()}
    assert graph == {"uncovered": {"CKV2_K8S_6"}, "covered": set()}


def test_batches_never_hold_two_resources_of_one_kind_and_name(tmp_path: Path) -> None:
    def target(name: str, *resources: tuple[str, str]) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            "".join(
                f"---\n{json.dumps({'kind': k, 'metadata': {'name': n}})}\n" for k, n in resources
            )
        )
        return str(path)

    a = target("a", ("Deployment", "web"), ("Service", "web"))
    b = target("b", ("Deployment", "api"))
    c = target("c", ("Service", "web"))
    assert checkov_engine._in_batches([a, b, c]) == [[a, b], [c]]
    many = [target(f"t{i}", ("Deployment", f"d{i}")) for i in range(checkov_engine.BATCH + 1)]
    assert [len(batch) for batch in checkov_engine._in_batches(many)] == [checkov_engine.BATCH, 1]
