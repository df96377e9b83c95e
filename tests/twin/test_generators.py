"""The ApplicationSets' git files generator as Argo CD evaluates it: every file in the tree that
matches, its content as parameters, and what a post selector sees of them."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from platformctl.imagefile import set_image
from platformctl.model import Image, load_repo
from platformctl.release import plan_promotion, plan_texts
from platformctl.scaffold import ServicePlan, plan_service, write_service
from platformctl.twin.bootstrap import bootstrap_of
from platformctl.twin.world import flatten, generate
from platformctl.verify import verify
from tests.twin.conftest import about, twin, world_of

NEW = "ledger"  # a service the fixture repository does not have


def _scaffold(root: Path) -> ServicePlan:
    """What ``platform new service`` writes (its verify step aside): the later stages' files
    have no image line yet."""
    plan = plan_service(load_repo(root), NEW)
    write_service(root, plan)
    return plan


IMAGE_SELECTOR = "          - key: image.repository\n            operator: Exists\n"


def test_without_the_image_selector_a_pending_file_is_an_application_no_target_renders(
    stacked: Path,
) -> None:
    template = stacked / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    assert IMAGE_SELECTOR in text
    template.write_text(text.replace(IMAGE_SELECTOR, ""))
    plan = _scaffold(stacked)
    later = plan.later_stages[0]
    assert (NEW, later) in load_repo(stacked).pending
    assert about(twin(stacked, later), "PLAT019", f"{later}/argocd") == [
        f"ApplicationSet/{later}-services: generates Application '{NEW}-{later}' from "
        f"environments/{later}/{NEW}.yaml, which no target renders: Argo CD would deploy it "
        "anyway (exclude the file, or render it)"
    ]


def test_a_pending_service_has_no_application_until_its_first_promotion(stacked: Path) -> None:
    plan = _scaffold(stacked)
    later = plan.later_stages[0]
    application = f"{NEW}-{later}"
    assert application not in world_of(stacked, later).apps
    assert twin(stacked, later) == []
    # the first promotion writes the image line (a digest, as the later stages require)
    first = load_repo(stacked).environment_names[0]
    dev = stacked / "environments" / first / f"{NEW}.yaml"
    dev.write_text(
        set_image(dev, Image(plan.image.repository, plan.image.tag, "sha256:" + "1" * 64))
    )
    promotion = plan_promotion(load_repo(stacked), [NEW], to=later)
    for relative, text in plan_texts(stacked, promotion).items():
        (stacked / relative).write_text(text)
    assert (NEW, later) not in load_repo(stacked).pending
    assert world_of(stacked, later).apps[application].target == f"{later}/{NEW}"
    assert twin(stacked, later) == []


def _appset(path: str, selector: dict[str, Any] | None = None) -> dict[str, Any]:
    generator: dict[str, Any] = {"git": {"files": [{"path": path}]}}
    if selector is not None:
        generator["selector"] = selector
    return {"spec": {"generators": [generator]}}


def _generated(
    root: Path, env: str, appset: dict[str, Any], *, new_globbing: bool = False
) -> list[tuple[dict[str, Any], str]]:
    repo = load_repo(root)
    environment = repo.environment(env)
    bootstrap = replace(bootstrap_of(repo, environment), new_git_file_globbing=new_globbing)
    return list(generate(repo, environment, bootstrap, appset, frozenset()))


def test_every_matching_file_in_the_tree_with_its_content_as_parameters(stacked: Path) -> None:
    repo = load_repo(stacked)
    env = repo.environment_names[0]
    stray = stacked / "environments" / env / "archive" / "old.yaml"
    stray.parent.mkdir()
    stray.write_text("team: {name: payments, size: 3}\nimage: {repository: example/old}\n")
    generated = _generated(stacked, env, _appset(f"environments/{env}/*.yaml"))
    # Argo CD's default globbing (git ls-files): '*' crosses folders, so the stray is a match
    assert sorted(made_from for _, made_from in generated) == sorted(
        [str(r.values_file.relative_to(stacked)) for r in repo.select([env])]
        + [f"environments/{env}/environment.yaml", f"environments/{env}/archive/old.yaml"]
    )
    params = next(p for p, made_from in generated if made_from.endswith("archive/old.yaml"))
    assert params["team"] == {"name": "payments", "size": 3}
    assert params["path"]["path"] == f"environments/{env}/archive"
    assert params["path"]["filename"] == "old.yaml"
    selected = _generated(
        stacked,
        env,
        _appset(f"environments/{env}/*.yaml", {"matchLabels": {"team.name": "payments"}}),
    )
    assert [made_from for _, made_from in selected] == [f"environments/{env}/archive/old.yaml"]


def test_new_globbing_keeps_a_star_within_its_folder(stacked: Path) -> None:
    env = load_repo(stacked).environment_names[0]
    stray = stacked / "environments" / env / "archive" / "old.yaml"
    stray.parent.mkdir()
    stray.write_text("{}\n")
    settings = f"environments/{env}/environment.yaml"

    def made_from(pattern: str) -> set[str]:
        return {m for _, m in _generated(stacked, env, _appset(pattern), new_globbing=True)}

    assert settings in made_from(f"environments/{env}/*.yaml")
    assert f"environments/{env}/archive/old.yaml" not in made_from(f"environments/{env}/*.yaml")
    # '**' is any number of folders, none included
    assert {settings, f"environments/{env}/archive/old.yaml"} <= made_from(
        f"environments/{env}/**/*.yaml"
    )
    assert made_from("environments/**/old.yaml") == {f"environments/{env}/archive/old.yaml"}


def test_a_file_holding_a_list_makes_one_parameter_set_per_element(stacked: Path) -> None:
    env = load_repo(stacked).environment_names[0]
    listed = stacked / "environments" / env / "extra" / "teams.yaml"
    listed.parent.mkdir()
    listed.write_text("- team: a\n- team: b\n- {}\n")
    generated = _generated(stacked, env, _appset(f"environments/{env}/extra/*.yaml"))
    assert [params.get("team") for params, _ in generated] == ["a", "b", None]
    assert {made_from for _, made_from in generated} == {f"environments/{env}/extra/teams.yaml"}


def test_the_post_selector_sees_nested_keys_dotted_and_values_as_go_prints_them() -> None:
    # jeremywohl/flatten (DotStyle) then fmt's %v, as Argo CD's flattenParameters does
    assert flatten(
        {
            "image": {"repository": "r", "tag": "1.0"},
            "on": True,
            "off": False,
            "none": None,
            "count": 3,
            "big": 1_000_000,
            "half": 0.5,
            "ports": [80, {"name": "http"}],
            "empty": {},
            "path": {"segments": ("environments", "dev")},
        }
    ) == {
        "image.repository": "r",
        "image.tag": "1.0",
        "on": "true",
        "off": "false",
        "none": "<nil>",
        "count": "3",
        "big": "1e+06",
        "half": "0.5",
        "ports.0": "80",
        "ports.1.name": "http",
        "path.segments": "[environments dev]",
    }


def test_a_file_argo_cd_cannot_parse_stops_the_applicationset(stacked: Path) -> None:
    env = load_repo(stacked).environment_names[0]
    folder = stacked / "environments" / env / "archive"
    folder.mkdir()
    (folder / "broken.yaml").write_text("image: [unclosed\n")
    notes = about(twin(stacked, env), "PLAT019", f"{env}/argocd")
    assert len(notes) == 1
    assert notes[0].startswith(f"ApplicationSet/{env}-services: cannot generate from ")
    assert f"environments/{env}/archive/broken.yaml:" in notes[0]
    assert notes[0].endswith(
        "Argo CD's generator fails, so the ApplicationSet creates, updates and deletes no "
        "Application until the file parses"
    )
    (folder / "broken.yaml").write_text("just a sentence\n")
    assert about(twin(stacked, env), "PLAT019", f"{env}/argocd") == [
        f"ApplicationSet/{env}-services: cannot generate from environments/{env}/archive/"
        "broken.yaml: it holds a string, not a mapping or a list of mappings: Argo CD's "
        "generator fails, so the ApplicationSet creates, updates and deletes no Application "
        "until the file parses"
    ]


def test_a_stray_copy_below_an_environment_folder_is_an_application_too(stacked: Path) -> None:
    repo = load_repo(stacked)
    env = repo.environment_names[0]
    release = repo.select([env])[0]
    copy = release.environment.path / "archive" / f"{release.service}-old.yaml"
    copy.parent.mkdir()
    shutil.copy(release.values_file, copy)
    assert about(twin(stacked, env), "PLAT019", f"{env}/argocd") == [
        f"ApplicationSet/{env}-services: generates Application '{release.service}-old-{env}' "
        f"from environments/{env}/archive/{release.service}-old.yaml, which no target renders: "
        "Argo CD would deploy it anyway (exclude the file, or render it)"
    ]


def test_a_release_no_application_deploys_is_reported(stacked: Path) -> None:
    repo = load_repo(stacked)
    env = repo.environment_names[0]
    left_out = repo.select([env])[0]
    template = stacked / "charts/gitops/templates/applicationset.yaml"
    text = template.read_text()
    assert "values: [environment.yaml]" in text
    filename = left_out.values_file.name
    template.write_text(text.replace("[environment.yaml]", f"[environment.yaml, {filename}]"))
    assert about(twin(stacked, env), "PLAT019") == [
        f"environments/{env}/{filename}: no ApplicationSet generates an Application from it: "
        "Argo CD would not deploy what the gate checked (a files entry or a selector leaves it "
        "out)"
    ]


def test_the_cached_twin_sees_a_pending_file_go(stacked: Path) -> None:
    """A pending file is no target's input, yet the twin reads it: its cached findings must
    not outlive it (without the image selector it is an Application, then it is deleted)."""
    template = stacked / "charts/gitops/templates/applicationset.yaml"
    template.write_text(template.read_text().replace(IMAGE_SELECTOR, ""))
    later = _scaffold(stacked).later_stages[0]

    def plat019() -> list[str]:
        report = verify(load_repo(stacked), [later], today=dt.date(2026, 1, 5))
        return about(report.failing, "PLAT019")

    assert plat019()  # and the verdict is cached
    (stacked / "environments" / later / f"{NEW}.yaml").unlink()
    assert plat019() == []
