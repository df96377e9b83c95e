from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from platformctl.errors import ExitCode, InputError
from platformctl.model import Image, find_root, load_repo, merge_values
from tests.conftest import PROJECT_ROOT, edit_yaml
from tests.release.fleet import make_fleet

DIGEST = "sha256:" + "ab" * 32
# The fixture repositories' services: this module's own, whatever the template ships.
ALPHA, BETA = SERVICES = ("alpha", "beta")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository with this module's services, for a test that edits it."""
    return make_fleet(tmp_path / "repo", list(SERVICES)).root


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository with this module's services for the tests that only read it; its base
    and production values of ALPHA both set LAYER, only base sets LAYER_BASE."""
    root = make_fleet(tmp_path_factory.mktemp("shared") / "repo", list(SERVICES)).root
    environments = root / "environments"
    edit_yaml(
        environments / f"base/{ALPHA}.yaml",
        lambda data: data.setdefault("env", {}).update(LAYER="base", LAYER_BASE="base"),
    )
    edit_yaml(
        environments / f"production/{ALPHA}.yaml",
        lambda data: data.setdefault("env", {}).update(LAYER="production"),
    )
    return root


def test_this_repository_loads_its_stages_and_services() -> None:
    """From the tree, not the sample's names: a fork that adds a service or a stage passes."""
    repo = load_repo(PROJECT_ROOT)
    environments = PROJECT_ROOT / "environments"
    assert repo.services == tuple(sorted(p.stem for p in (environments / "base").glob("*.yaml")))
    files = {
        (path.stem, env)
        for env in repo.environment_names
        for path in (environments / env).glob("*.yaml")
        if path.name != "environment.yaml"
    }
    assert set(repo.releases) | set(repo.pending) == files
    for release in repo.releases.values():
        if release.environment.policy.require_digest:
            assert release.image.digest, f"{release.key} must pin a digest"
    first, *later = repo.environments
    assert repo.previous(first.name) is None
    for before, stage in zip(repo.environments, later, strict=False):
        assert repo.previous(stage.name) == before


def test_release_values_layer_environment_over_base(shared: Path) -> None:
    release = load_repo(shared).release(ALPHA, "production")
    assert release.values["env"]["LAYER_BASE"] == "base"  # from base
    assert release.values["env"]["LAYER"] == "production"  # from the environment
    assert release.values["image"]["digest"] == release.image.digest


def test_merge_values_merges_maps_and_replaces_lists() -> None:
    lower = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    upper = {"a": {"c": [3]}, "e": 2}
    assert merge_values(lower, upper) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}


def test_image_reference_prefers_digest() -> None:
    assert Image("r/x", "1.0", DIGEST).reference == f"r/x@{DIGEST}"
    assert Image("r/x", "1.0").reference == "r/x:1.0"
    with pytest.raises(ValueError, match="tag or a digest"):
        Image("r/x")
    with pytest.raises(ValueError, match="sha256"):
        Image("r/x", "1.0", "md5:abc")


def test_find_root_walks_up_and_fails_clearly(shared: Path, tmp_path: Path) -> None:
    assert find_root(shared / "environments" / "dev") == shared.resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(InputError, match="--repo"):
        find_root(outside)


def test_unknown_names_suggest_the_closest(shared: Path) -> None:
    model = load_repo(shared)
    with pytest.raises(InputError, match="did you mean 'production'"):
        model.environment("prod")
    with pytest.raises(InputError, match=f"did you mean '{BETA}'"):
        model.service(BETA.replace("e", "", 1))


@pytest.mark.parametrize("name", ["../dev", "a/b", "x;rm -rf", "Upper", "-x", "a" * 54])
def test_names_with_separators_or_metacharacters_are_refused(shared: Path, name: str) -> None:
    model = load_repo(shared)
    with pytest.raises(InputError, match="not a valid service name"):
        model.service(name)


def _load_error(repo: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_repo(repo)
    assert caught.value.exit_code == ExitCode.USAGE
    return str(caught.value)


def test_malformed_yaml_names_file_and_line(repo: Path) -> None:
    path = repo / f"environments/dev/{ALPHA}.yaml"
    path.write_text(path.read_text() + "resources: [unclosed\n")
    message = _load_error(repo)
    assert f"environments/dev/{ALPHA}.yaml:" in message
    assert "malformed YAML" in message


def test_unknown_key_names_file_line_key_and_suggestion(repo: Path) -> None:
    path = repo / f"environments/staging/{BETA}.yaml"
    path.write_text(path.read_text() + "replicaCout: 3\n")
    line = len(path.read_text().splitlines())
    message = _load_error(repo)
    assert f"{BETA}.yaml:{line}: replicaCout: unknown key" in message
    assert "did you mean 'replicaCount'" in message


def test_wrong_type_names_nested_key(repo: Path) -> None:
    edit_yaml(
        repo / f"environments/production/{ALPHA}.yaml",
        lambda data: data.setdefault("autoscaling", {}).__setitem__("minReplicas", "three"),
    )
    message = _load_error(repo)
    assert f"production/{ALPHA}.yaml:" in message
    assert "autoscaling.minReplicas" in message
    assert "expected a whole number, got a string" in message


def test_numeric_tag_must_be_quoted(repo: Path) -> None:
    release = load_repo(repo).release(ALPHA, "dev")
    text = release.values_file.read_text()
    assert f"tag: {release.image.tag}," in text
    release.values_file.write_text(text.replace(f"tag: {release.image.tag},", "tag: 1.5,"))
    assert "image.tag" in _load_error(repo)


def test_bad_digest_is_refused_with_location(repo: Path) -> None:
    path = repo / f"environments/production/{ALPHA}.yaml"
    text = path.read_text()
    path.write_text(text.replace('digest: "sha256:', 'digest: "sha256:zz'))
    line = next(n for n, t in enumerate(text.splitlines(), 1) if 'digest: "sha256:' in t)
    message = _load_error(repo)
    assert f"production/{ALPHA}.yaml:{line}" in message


def test_missing_image_is_refused(repo: Path) -> None:
    edit_yaml(repo / f"environments/dev/{BETA}.yaml", lambda data: data.pop("image"))
    assert "image: missing" in _load_error(repo)


def test_image_in_base_is_refused(repo: Path) -> None:
    edit_yaml(
        repo / f"environments/base/{BETA}.yaml",
        lambda data: data.__setitem__("image", {"tag": "1.0"}),
    )
    assert "set the image per environment" in _load_error(repo)


def test_service_without_base_is_refused(repo: Path) -> None:
    (repo / "environments/dev/cart-service.yaml").write_text("image: {repository: r, tag: a}\n")
    assert "has no environments/base/cart-service.yaml" in _load_error(repo).replace(
        str(repo) + "/", ""
    )


def test_folder_that_is_not_a_stage_is_refused(repo: Path) -> None:
    (repo / "environments/not-a-stage").mkdir()
    assert "not a stage" in _load_error(repo)


def test_stage_without_environment_file_is_refused(repo: Path) -> None:
    (repo / "environments/staging/environment.yaml").unlink()
    assert "environment.yaml: missing for stage 'staging'" in _load_error(repo)


def test_bad_environment_setting_is_refused(repo: Path) -> None:
    edit_yaml(
        repo / "environments/dev/environment.yaml",
        lambda data: data["cluster"].__setitem__("kubernetesVersion", "latest"),
    )
    assert "cluster.kubernetesVersion" in _load_error(repo)


def test_duplicate_and_reserved_stages_are_refused(repo: Path) -> None:
    pipeline = repo / "environments/pipeline.yaml"
    original = pipeline.read_text()
    pipeline.write_text(original + "  - name: dev\n")
    assert "listed twice" in _load_error(repo)
    pipeline.write_text(original + "  - name: base\n")
    assert "reserved name" in _load_error(repo)


def test_yml_extension_is_refused(repo: Path) -> None:
    source = repo / f"environments/dev/{ALPHA}.yaml"
    source.rename(source.with_suffix(".yml"))
    assert f"rename to {ALPHA}.yaml" in _load_error(repo)


def test_missing_chart_schema_is_reported(repo: Path) -> None:
    (repo / "charts/service/values.schema.json").unlink()
    assert "values.schema.json: missing" in _load_error(repo)


def test_service_missing_from_an_environment_is_not_deployed_there(repo: Path) -> None:
    releases = len(load_repo(repo).releases)
    (repo / f"environments/production/{BETA}.yaml").unlink()
    model = load_repo(repo)
    assert len(model.releases) == releases - 1
    with pytest.raises(InputError, match="not deployed in 'production'"):
        model.release(BETA, "production")


@pytest.mark.usefixtures("own_cache")
def test_known_valid_files_are_not_checked_again_but_changed_ones_are(repo: Path) -> None:
    load_repo(repo)
    known = json.loads((repo / ".platform-cache/valid.json").read_text())["entries"]
    # every values, environment and pipeline file of the repository passed once
    folders = ["base", *load_repo(repo).environment_names]
    files = [p for folder in folders for p in (repo / "environments" / folder).glob("*.yaml")]
    assert len(known) == len(files) + 1  # and pipeline.yaml
    path = repo / f"environments/staging/{BETA}.yaml"
    path.write_text(path.read_text() + "replicaCout: 3\n")
    assert "replicaCout: unknown key" in _load_error(repo)


def test_a_changed_schema_checks_known_files_again(repo: Path) -> None:
    load_repo(repo)
    schema_path = repo / "charts/service/values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["replicaCount"]["maximum"] = 0
    schema_path.write_text(json.dumps(schema))
    assert "replicaCount" in _load_error(repo)


@pytest.mark.usefixtures("own_cache")
def test_a_corrupt_known_valid_file_is_ignored(repo: Path) -> None:
    load_repo(repo)
    (repo / ".platform-cache/valid.json").write_text("{not json")
    assert load_repo(repo).services
    assert json.loads((repo / ".platform-cache/valid.json").read_text())["entries"]


@pytest.mark.usefixtures("own_cache")
def test_parsed_files_read_back_from_the_cache_as_parsed(repo: Path) -> None:
    fresh = load_repo(repo)
    parsed = json.loads((repo / ".platform-cache/parsed.json").read_text())["entries"]
    # every values file, every environment.yaml and pipeline.yaml, one entry per distinct text
    files = [
        *(repo / "environments/base").glob("*.yaml"),
        *(path for env in fresh.environments for path in env.path.glob("*.yaml")),
        repo / "environments/pipeline.yaml",
    ]
    assert len(parsed) == len({path.read_text() for path in files})
    again = load_repo(repo)
    assert again.releases == fresh.releases
    assert again.environments == fresh.environments
    # each read decodes its own copy: a caller changing one changes no other
    service, env = next(iter(fresh.releases))
    release = again.release(service, env)
    release.environment_values["image"]["tag"] = "changed"
    assert load_repo(repo).release(service, env).image == fresh.release(service, env).image


@pytest.mark.usefixtures("own_cache")
def test_a_corrupt_parsed_cache_is_ignored(repo: Path) -> None:
    fresh = load_repo(repo)
    (repo / ".platform-cache/parsed.json").write_text("{not json")
    assert load_repo(repo).releases == fresh.releases
    assert json.loads((repo / ".platform-cache/parsed.json").read_text())["entries"]


@pytest.mark.usefixtures("own_cache")
def test_a_text_json_cannot_hold_exactly_is_parsed_each_time(tmp_path: Path) -> None:
    from platformctl.documents import KnownValid

    known = KnownValid(tmp_path)
    path = tmp_path / "dated.yaml"
    assert known.mapping(path, "day: 2026-01-01\n") == {"day": dt.date(2026, 1, 1)}
    assert known.mapping(path, "1: one\n") == {1: "one"}
    assert not known.parsed


def test_with_release_files_reads_only_the_named_files_again(repo: Path) -> None:
    loaded = load_repo(repo)
    release = loaded.release(ALPHA, "dev")
    edit_yaml(release.values_file, lambda data: data["image"].update(tag="9.9.9"))
    edit_yaml(repo / f"environments/dev/{BETA}.yaml", lambda data: data.update(x=1))
    updated = loaded.with_release_files([release.values_file])
    assert updated.release(ALPHA, "dev").image.tag == "9.9.9"
    assert loaded.release(ALPHA, "dev").image.tag != "9.9.9"
    with pytest.raises(ValueError, match="not the values file"):
        loaded.with_release_files([repo / "environments/dev/environment.yaml"])


def test_an_unknown_name_among_many_lists_a_few_and_the_count() -> None:
    from platformctl.errors import LISTED_NAMES, unknown_name

    names = [f"service-{index:03d}" for index in range(100)]
    error = unknown_name("service", "zzz", names)
    assert error.hint is not None
    assert error.hint.startswith("known: service-000, service-001")
    assert "service-099" not in error.hint
    assert error.hint.count("service-") == LISTED_NAMES
    assert error.hint.endswith("and 92 more: see `platform status`")
    few = unknown_name("service", "zzz", ["a-b", "c-d"])
    assert few.hint == "known: a-b, c-d"
