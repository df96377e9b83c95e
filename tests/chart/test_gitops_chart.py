"""The Argo CD objects: one ApplicationSet and AppProject per environment, from the model."""

from __future__ import annotations

from typing import Any

from platformctl.model import load_repo
from platformctl.render import Renderer
from platformctl.twin.world import file_params, flatten, selects
from tests.chart.test_service_chart import EVERYTHING
from tests.chart.test_service_chart import render as render_service
from tests.conftest import PROJECT_ROOT


def objects(environment: str) -> dict[str, Any]:
    """The services' objects by kind (the add-ons' are named ``<env>-addons|platform``)."""
    repo = load_repo(PROJECT_ROOT)
    rendered = Renderer(repo).gitops(repo.environment(environment))
    return {
        doc["kind"]: doc
        for doc in rendered.documents
        if doc["metadata"]["name"] in (environment, f"{environment}-services")
    }


def test_applications_layer_values_like_the_model() -> None:
    spec = objects("staging")["ApplicationSet"]["spec"]["template"]["spec"]
    assert spec["source"]["path"] == "charts/service"
    assert spec["source"]["helm"]["valueFiles"] == [
        "../../environments/base/{{ .path.filename }}",
        "../../environments/staging/{{ .path.filename }}",
    ]
    assert spec["project"] == "staging"
    assert spec["destination"]["namespace"] == "apps"


def test_sync_policy_per_environment() -> None:
    def automated(env: str) -> Any:
        return objects(env)["ApplicationSet"]["spec"]["template"]["spec"]["syncPolicy"]["automated"]

    assert automated("dev") == {"prune": True, "selfHeal": True}
    assert automated("staging") == {"prune": True, "selfHeal": True}
    assert automated("production") == {"prune": False, "selfHeal": True}


def test_project_restricts_source_destination_and_kinds() -> None:
    repo = load_repo(PROJECT_ROOT)
    project = objects("production")["AppProject"]["spec"]
    assert project["sourceRepos"] == [repo.repository_url]
    assert project["destinations"] == [
        {"server": "https://kubernetes.default.svc", "namespace": "apps"}
    ]
    assert project["clusterResourceWhitelist"] == []
    allowed = {(k["group"], k["kind"]) for k in project["namespaceResourceWhitelist"]}
    rendered = [
        doc
        for strategy in ("rolling", "canary", "blueGreen")
        for doc in render_service({**EVERYTHING, "delivery": {"strategy": strategy}})
    ]
    assert {"Deployment", "Rollout", "ExternalSecret", "PrometheusRule"} <= {
        doc["kind"] for doc in rendered
    }
    for doc in rendered:
        group = doc["apiVersion"].rpartition("/")[0]
        assert (group, doc["kind"]) in allowed, doc["kind"]


def _generates(env: str, selector: dict[str, Any], filename: str, content: Any) -> bool:
    (params,) = file_params(f"environments/{env}/{filename}", content)
    return selects(selector, flatten(params))


def test_only_a_service_file_with_an_image_line_is_an_application() -> None:
    """The post selector leaves out the settings file and a file no promotion has given an
    image line yet (``platform new service`` writes the later stages' so), evaluated as
    Argo CD evaluates it on the file's content."""
    image = {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x", "tag": "1.0.0"}
    for env in load_repo(PROJECT_ROOT).environment_names:
        generator = objects(env)["ApplicationSet"]["spec"]["generators"][0]
        assert generator["git"]["files"] == [{"path": f"environments/{env}/*.yaml"}]
        selector = generator["selector"]
        assert selector == {
            "matchExpressions": [
                {"key": "path.filename", "operator": "NotIn", "values": ["environment.yaml"]},
                {"key": "image.repository", "operator": "Exists"},
            ]
        }
        assert _generates(env, selector, "x.yaml", {"image": image, "replicas": 2})
        assert not _generates(env, selector, "x.yaml", {"replicas": 2})
        assert not _generates(env, selector, "x.yaml", None)
        assert not _generates(env, selector, "environment.yaml", {"image": image})
