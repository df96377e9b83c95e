"""Exception targets: ``env/service[/Kind/name]``; an add-on chart's is ``env/addons/<add-on>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from platformctl.errors import InputError
from platformctl.policy.exceptions import load_exceptions
from platformctl.policy.findings import Finding


def exceptions_file(tmp_path: Path, *targets: str) -> Path:
    path = tmp_path / "policy-exceptions.yaml"
    path.write_text(
        "exceptions:\n"
        + "".join(
            f'  - check: CKV_K8S_38\n    target: "{target}"\n'
            "    reason: it watches the API server with its token; platform team\n"
            "    expires: 2027-01-31\n"
            for target in targets
        )
    )
    return path


def finding(target: str, resource: str) -> Finding:
    return Finding(target, "CKV_K8S_38", resource, "token mounted", "checkov")


def test_an_addon_exception_names_one_resource_of_one_addon(tmp_path: Path) -> None:
    (exception,) = load_exceptions(
        exceptions_file(tmp_path, "*/addons/external-dns/Deployment/external-dns")
    )
    assert exception.matches(finding("staging/addons/external-dns", "Deployment/external-dns"))
    assert not exception.matches(finding("staging/addons/external-dns", "Deployment/other"))
    assert not exception.matches(finding("staging/addons/fluent-bit", "Deployment/external-dns"))
    # the add-ons chart's own objects are env/addons with Kind/name
    assert not exception.matches(finding("staging/addons", "Deployment/external-dns"))


def test_an_addon_exception_may_cover_the_whole_addon(tmp_path: Path) -> None:
    (exception,) = load_exceptions(exceptions_file(tmp_path, "dev/addons/external-dns"))
    assert exception.matches(finding("dev/addons/external-dns", "Deployment/external-dns"))
    assert not exception.matches(finding("production/addons/external-dns", "Deployment/x"))


def test_the_addons_charts_own_objects_keep_their_shape(tmp_path: Path) -> None:
    (exception,) = load_exceptions(exceptions_file(tmp_path, "dev/addons/Namespace/apps"))
    assert exception.matches(finding("dev/addons", "Namespace/apps"))


@pytest.mark.parametrize(
    "target",
    ["dev", "dev/alpha/Deployment", "dev/alpha/Deployment/a/b", "dev/addons/a/b/c/d"],
)
def test_other_shapes_are_refused_with_their_line(tmp_path: Path, target: str) -> None:
    with pytest.raises(InputError, match=r"policy-exceptions.yaml:\d+: target .* must be"):
        load_exceptions(exceptions_file(tmp_path, target))
