"""The verify gate: clean on this repository, failing on each seeded violation, cache sound."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from platformctl import verify as verify_module
from platformctl.cachefile import CACHE_DIR, SHARED_CACHE_VARIABLE
from platformctl.errors import InputError
from platformctl.image_shapes import image_shape
from platformctl.model import load_repo
from platformctl.render import ADDONS_TARGET, CHARTS_FILE, RENDERS_DIR, Renderer
from platformctl.verify import CACHE_FILE, verify
from tests.chart.test_addons_values import addon_exceptions
from tests.conftest import edit_yaml, init_repo
from tests.release.fleet import make_fleet

TODAY = dt.date(2026, 11, 22)
# The services of the fixture repositories: this module's own, whatever the template ships.
ALPHA, BETA = SERVICES = ("alpha", "beta")


def values(stage: str, service: str) -> str:
    return f"environments/{stage}/{service}.yaml"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """This repository's stages and charts with this module's services, for a test to break."""
    return make_fleet(tmp_path / "repo", list(SERVICES)).root


@pytest.fixture(scope="module")
def verified_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet's own ``.platform-cache/`` after its first run, once for the module: that run
    starts empty, so it renders every release and add-on chart of every environment and runs
    checkov over them (10-25 s), which each test of a warm cache would pay only to warm it."""
    root = make_fleet(tmp_path_factory.mktemp("verified") / "repo", list(SERVICES)).root
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SHARED_CACHE_VARIABLE, raising=False)  # as own_cache does
        assert run(root).cache_hits == 0  # it started empty: the folder holds this run's only
    return root / CACHE_DIR


@pytest.fixture
def warm_fleet(fleet: Path, own_cache: None, verified_cache: Path) -> Path:
    """``fleet`` keeping its own cache, with what its own first run would write there: a
    fleet is a clone of the same template, and every entry but the chart digests' is keyed
    by content (chart files, exact values, the engines), none by the checkout's path."""
    # the chart digests are kept by the checkout's path and files' stats: another checkout's
    # would only be misses
    shutil.copytree(verified_cache, fleet / CACHE_DIR, ignore=shutil.ignore_patterns(CHARTS_FILE))
    return fleet


def run(repo: Path, *, use_cache: bool = True, **kwargs: Any) -> Any:
    """The gate with the session's shared cache (tests/conftest.py): each test seeds one
    change, and every target it did not change was checked once for the session."""
    return verify(load_repo(repo), use_cache=use_cache, today=TODAY, **kwargs)


def checks(report: Any) -> set[tuple[str, str]]:
    return {(f.target, f.check) for f in report.failing}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A copy of this repository and its gate's report, every target rendered and checked (no
    cache), once for the tests that read it: a run takes ~10 s."""
    root = init_repo(tmp_path_factory.mktemp("repository") / "repo")
    return root, run(root, use_cache=False)


def test_this_repository_is_clean(repository: tuple[Path, Any]) -> None:
    repo, report = repository  # every target checked, as counted below
    assert report.ok, report.failing
    model = load_repo(repo)
    renderer = Renderer(model)
    upstream = sum(len(renderer.addon_chart_jobs(e)) for e in model.environments)
    # the releases; per environment its Argo CD objects, its add-ons and each add-on's chart
    assert len(report.targets) == len(model.releases) + 2 * len(model.environments) + upstream
    # all but the Argo CD objects (they have no pods)
    assert report.checked_by_checkov == len(report.targets) - len(model.environments)


def test_every_addon_exception_excepts_a_finding_of_its_resource(
    repository: tuple[Path, Any],
) -> None:
    """The gate is clean, and no add-on exception outlives the finding it was written for (a
    value that fixed it must take the exception with it); see tests/chart/test_addons_values.py."""
    _, report = repository
    assert report.ok, [f"{f.target} {f.check} {f.resource}: {f.message}" for f in report.failing]
    unused = addon_exceptions(report.unused_exceptions)
    assert not unused, [f"{e.check} {e.target}" for e in unused]
    # each excepted add-on finding is excepted on its own resource
    for excepted in report.excepted:
        parts = excepted.finding.target.split("/")
        if len(parts) == 3 and parts[1] == ADDONS_TARGET:
            assert excepted.exception.target.endswith(f"/{excepted.finding.resource}")


def set_value(path: str, *keys_and_value: Any) -> Callable[[Path], None]:
    *keys, last, value = keys_and_value

    def seed(repo: Path) -> None:
        def change(data: Any) -> None:
            for key in keys:
                data = data.setdefault(key, {})
            data[last] = value

        edit_yaml(repo / path, change)

    return seed


def all_of(*seeds: Callable[[Path], None]) -> Callable[[Path], None]:
    """One seed of several edits: a violation and what it needs to show (e.g. an HPA)."""

    def seed(repo: Path) -> None:
        for each in seeds:
            each(repo)

    return seed


def drop_digest(repo: Path) -> None:
    edit_yaml(
        repo / values("production", ALPHA),
        lambda data: data["image"].pop("digest"),
    )


def latest_tag(repo: Path) -> None:
    """A dev image by tag only, and that tag 'latest' (with a digest the pod pulls the digest)."""

    def change(data: Any) -> None:
        data["image"].pop("digest", None)
        data["image"]["tag"] = "latest"

    edit_yaml(repo / values("dev", BETA), change)


def strip_probe(repo: Path) -> None:
    template = repo / "charts/service/templates/_pod.tpl"
    text = template.read_text()
    start = text.index("      readinessProbe:")
    end = text.index("      {{- if .Values.probes.startup.enabled }}")
    template.write_text(text[:start] + text[end:])


def writable_root(repo: Path) -> None:
    template = repo / "charts/service/templates/_pod.tpl"
    text = template.read_text()
    template.write_text(
        text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    )


def unrestrict_workloads(repo: Path) -> None:
    template = repo / "charts/addons/templates/namespace.yaml"
    template.write_text(template.read_text().replace(": restricted\n", ": baseline\n", 1))


def no_waves(repo: Path) -> None:
    """Every add-on in wave 0 (no annotation): users of CRDs no longer come after installers."""
    template = repo / "charts/addons/templates/application.yaml"
    lines = template.read_text().splitlines(keepends=True)
    template.write_text("".join(line for line in lines if "sync-wave" not in line))


def drop_default_deny(repo: Path) -> None:
    (repo / "charts/addons/templates/networkpolicy.yaml").unlink()


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (drop_digest, (f"production/{ALPHA}", "PLAT001")),
        (latest_tag, (f"dev/{BETA}", "PLAT002")),
        (
            all_of(
                set_value(values("staging", ALPHA), "autoscaling", "enabled", False),
                set_value(values("staging", ALPHA), "replicaCount", 1),
            ),
            (f"staging/{ALPHA}", "PLAT003"),
        ),
        (
            set_value(values("production", BETA), "podDisruptionBudget", "enabled", False),
            (f"production/{BETA}", "PLAT003"),
        ),
        (
            all_of(
                set_value(values("production", BETA), "autoscaling", "enabled", True),
                set_value(values("production", BETA), "autoscaling", "minReplicas", 1),
            ),
            (f"production/{BETA}", "PLAT003"),
        ),
        (strip_probe, (f"dev/{ALPHA}", "PLAT004")),
        (
            set_value(values("staging", BETA), "service", "type", "LoadBalancer"),
            (f"staging/{BETA}", "PLAT005"),
        ),
        (writable_root, (f"production/{BETA}", "CKV_K8S_22")),
        (
            all_of(
                set_value(values("production", ALPHA), "delivery", "strategy", "canary"),
                set_value(
                    values("production", ALPHA),
                    "delivery",
                    "analysis",
                    "objectives",
                    "latencyP95Seconds",
                    0.5,
                ),
            ),
            (f"production/{ALPHA}", "PLAT008"),
        ),
        (
            set_value("environments/addons/dev.yaml", "addons", "fluent-bit", "wave", 0),
            ("dev/addons", "PLAT010"),
        ),
        (
            set_value(
                "environments/addons/production.yaml",
                "addons",
                "prometheus-operator-crds",
                "enabled",
                False,
            ),
            ("production/addons", "PLAT010"),
        ),
        (no_waves, ("dev/addons", "PLAT010")),
        (unrestrict_workloads, ("staging/addons", "PLAT011")),
        (drop_default_deny, ("dev/addons", "PLAT011")),
        (
            set_value(values("production", BETA), "delivery", "canary", "weights", ["ten"]),
            None,
        ),
    ],
    ids=[
        "digest",
        "latest",
        "replicas",
        "pdb",
        "hpa-min",
        "probes",
        "load-balancer",
        "checkov",
        "looser-analysis",
        "wave",
        "installer-disabled",
        "no-waves",
        "pod-security",
        "default-deny",
        "bad-values",
    ],
)
def test_each_rule_fails_on_a_seeded_violation(
    fleet: Path, seed: Callable[[Path], None], expected: tuple[str, str] | None
) -> None:
    seed(fleet)
    if expected is None:
        with pytest.raises(InputError, match=rf"{BETA}\.yaml:\d+: delivery\.canary\.weights #1"):
            run(fleet)
        return
    # the environment of the target that shows it: another's targets cannot show it
    report = run(fleet, environments=[expected[0].split("/", 1)[0]])
    assert not report.ok
    assert expected in checks(report)


def test_load_balancer_allowed_where_the_environment_says_so(fleet: Path) -> None:
    set_value(values("staging", BETA), "service", "type", "LoadBalancer")(fleet)
    set_value("environments/staging/environment.yaml", "policy", "allowLoadBalancer", True)(fleet)
    assert (f"staging/{BETA}", "PLAT005") not in checks(run(fleet, environments=["staging"]))


def test_kind_not_allowed_by_the_app_project_fails(fleet: Path) -> None:
    project = fleet / "charts/gitops/values.yaml"
    project.write_text(
        project.read_text().replace("  - {group: policy, kind: PodDisruptionBudget}\n", "")
    )
    # production requires a PodDisruptionBudget of every service
    assert (f"production/{ALPHA}", "PLAT006") in checks(run(fleet, environments=["production"]))


@pytest.mark.parametrize(
    ("template", "field", "typo", "target"),
    [
        ("gitops/templates/applicationset.yaml", "goTemplate:", "goTemplates:", "dev/argocd"),
        (
            "service/templates/rollout.yaml",
            "startingStep:",
            "startStep:",
            f"production/{ALPHA}",
        ),
        ("addons/templates/externalsecret.yaml", "refreshInterval:", "refresh:", "dev/addons"),
    ],
    ids=["applicationset", "rollout", "externalsecret"],
)
def test_custom_resources_are_checked_against_their_crd_schema(
    fleet: Path, template: str, field: str, typo: str, target: str
) -> None:
    # a Rollout to render the rollout's template
    set_value(values("production", ALPHA), "delivery", "strategy", "canary")(fleet)
    path = fleet / "charts" / template
    path.write_text(path.read_text().replace(field, typo))
    report = run(fleet, environments=[target.split("/", 1)[0]])
    assert (target, "SCHEMA") in checks(report)
    message = next(f.message for f in report.failing if f.target == target)
    assert typo.rstrip(":") in message


def test_core_kinds_are_checked_against_the_kubernetes_schema(fleet: Path) -> None:
    template = fleet / "charts/service/templates/pdb.yaml"
    template.write_text(template.read_text().replace("minAvailable:", "minAvailabel:"))
    report = run(fleet, environments=["production"])
    assert (f"production/{ALPHA}", "SCHEMA") in checks(report)


def add_exception(repo: Path, expires: str, target: str = f"production/{ALPHA}") -> None:
    path = repo / "environments/policy-exceptions.yaml"
    path.write_text(
        path.read_text().replace("exceptions: []", "exceptions:\n")
        + f"  - check: PLAT001\n    target: {target}\n"
        "    reason: vendor image is rebuilt nightly, digest pinned by the vendor (OPS-12)\n"
        f"    expires: {expires}\n"
    )


DATE = dt.date(2026, 12, 31)


def test_exception_excepts_until_it_expires(fleet: Path) -> None:
    drop_digest(fleet)
    add_exception(fleet, DATE.isoformat())
    report = run(fleet)
    assert report.ok
    assert [e.finding.check for e in report.excepted if e.exception.expires == DATE] == ["PLAT001"]


def test_expired_exception_fails(fleet: Path) -> None:
    drop_digest(fleet)
    add_exception(fleet, "2026-11-01")
    report = run(fleet)
    assert {(f"production/{ALPHA}", "PLAT001"), (f"production/{ALPHA}", "PLAT900")} <= (
        checks(report)
    )


def test_unused_exception_is_reported(fleet: Path) -> None:
    used = {e.target for e in run(fleet).unused_exceptions}
    add_exception(fleet, "2026-12-31", target="dev/*")
    report = run(fleet)
    assert report.ok
    assert [e.target for e in report.unused_exceptions if e.target not in used] == ["dev/*"]


def test_malformed_exception_is_an_input_error(fleet: Path) -> None:
    add_exception(fleet, "next week")
    from platformctl.errors import InputError

    with pytest.raises(InputError, match=r"policy-exceptions.yaml:\d+: expires: not a date"):
        run(fleet)


def test_image_shape_keeps_what_checkov_reads() -> None:
    assert image_shape("r.io/a/b:1.2@sha256:00") == "r.io/a/b:<tag>@<digest>"
    assert image_shape("r.io:5000/a:latest") == "r.io:5000/a:latest"
    assert image_shape("r.io:5000/a") == "r.io:5000/a"
    assert image_shape("r/a@sha256:00") == "r/a@<digest>"


@pytest.mark.usefixtures("own_cache")
def test_cache_hits_when_nothing_changed_and_when_only_an_image_changed(fleet: Path) -> None:
    first = run(fleet, use_cache=True)
    assert first.cache_hits == 0
    second = run(fleet, use_cache=True)
    assert second.cache_hits == len(second.targets)
    assert second.checked_by_checkov == 0
    # a promotion: another tag and digest only
    edit_yaml(
        fleet / values("production", ALPHA),
        lambda data: data["image"].update(tag="1.4.2", digest="sha256:" + "12" * 32),
    )
    third = run(fleet, use_cache=True)
    assert third.checked_by_checkov == 0
    assert third.ok


def test_cache_does_not_hide_image_rules(warm_fleet: Path) -> None:
    drop_digest(warm_fleet)
    report = run(warm_fleet, use_cache=True)
    assert report.cache_hits > 0  # the copy is warm: the other targets came from it
    assert (f"production/{ALPHA}", "PLAT001") in checks(report)


def test_cache_is_invalidated_by_a_value_change(warm_fleet: Path) -> None:
    set_value(values("dev", ALPHA), "containerPort", 8080)(warm_fleet)
    report = run(warm_fleet, use_cache=True)
    assert [t.key for t in report.targets if not t.cached] == [f"dev/{ALPHA}"]
    assert report.checked_by_checkov == 1


def test_cache_is_invalidated_by_a_template_change(warm_fleet: Path) -> None:
    writable_root(warm_fleet)
    report = run(warm_fleet, use_cache=True)
    assert report.checked_by_checkov == len(load_repo(warm_fleet).releases)
    assert (f"dev/{ALPHA}", "CKV_K8S_22") in checks(report)


def test_cache_is_invalidated_when_the_engines_change(
    warm_fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # warm before: the copy holds verdicts (else no hits after would prove nothing)
    assert json.loads((warm_fleet / CACHE_DIR / "verify.json").read_text())["entries"]
    monkeypatch.setattr("platformctl.verify.checkov_version", lambda: "999.0.0")
    assert run(warm_fleet, use_cache=True).cache_hits == 0


def test_a_new_project_rule_applies_despite_a_warm_cache(
    warm_fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platformctl.policy import rules

    set_value(values("dev", ALPHA), "env", "LOG_LEVEL", "debug")(warm_fleet)
    run(warm_fleet, use_cache=True)  # the debug value checked, with the rules of the day

    def no_debug(rendered: Any, _: Any) -> Any:
        for doc in rendered.documents:
            if doc["kind"] == "ConfigMap" and (doc.get("data") or {}).get("LOG_LEVEL") == "debug":
                yield rules.resource_id(doc), "debug logging"

    monkeypatch.setattr(rules, "RULES", (*rules.RULES, rules.Rule("PLAT999", "t", no_debug)))
    report = run(warm_fleet, use_cache=True)
    assert report.checked_by_checkov == 0
    assert (f"dev/{ALPHA}", "PLAT999") in checks(report)


def test_no_cache_renders_again_instead_of_reading_stored_renders(warm_fleet: Path) -> None:
    """--no-cache is the check to run when a cache is in doubt: a stored render that no
    longer says what the chart renders (edited by hand, a bug) is not read."""
    for path in (warm_fleet / CACHE_DIR / RENDERS_DIR).glob("*.json"):
        stored = json.loads(path.read_text())
        for document in stored["entries"]["documents"]:
            if document.get("kind") == "Deployment":
                document["spec"]["template"]["spec"]["hostNetwork"] = True
        path.write_text(json.dumps(stored))
    # the verdicts go: each target is checked again, on what the stored render says
    (warm_fleet / CACHE_DIR / CACHE_FILE).unlink()
    one = {"environments": [load_repo(warm_fleet).environments[0].name], "services": [ALPHA]}
    assert not run(warm_fleet, use_cache=True, **one).ok
    assert run(warm_fleet, use_cache=False, **one).ok


def test_corrupt_cache_is_ignored(warm_fleet: Path) -> None:
    (warm_fleet / ".platform-cache/verify.json").write_text("{not json")
    assert run(warm_fleet, use_cache=True).ok
    assert json.loads((warm_fleet / ".platform-cache/verify.json").read_text())["entries"]


@pytest.mark.parametrize("engine", ["helm-python-sdk", "PyYAML"])
def test_a_new_renderer_asks_every_verdict_again(
    monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """A new Helm SDK (or the YAML library that parses its output) can render the same inputs
    differently, so nothing keyed on inputs alone may answer for it: the engines' fingerprint,
    which every verdict and the twin are keyed on, changes with their versions, as the stored
    renders' does."""
    before = verify_module.engine_fingerprint()
    installed = verify_module.version
    monkeypatch.setattr(
        verify_module, "version", lambda name: "0.0.0-new" if name == engine else installed(name)
    )
    verify_module.installed_engines.cache_clear()
    try:
        assert verify_module.engine_fingerprint() != before
    finally:
        verify_module.installed_engines.cache_clear()
