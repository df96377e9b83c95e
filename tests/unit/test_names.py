"""Names, tags and digests are whole-string matches: Python's ``$`` also matches before a
final newline, which would let ``svc\\n`` through to a path, a commit or a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from platformctl.errors import InputError
from platformctl.model import Image, check_name, load_repo
from tests.release.fleet import make_fleet


@pytest.mark.parametrize("name", ["svc\n", "svc\n\n", "\nsvc"])
def test_a_name_with_a_newline_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="is not a valid service name"):
        check_name("service", name)


@pytest.mark.parametrize(
    ("tag", "digest"),
    [("1.0\n", None), (None, "sha256:" + "a" * 64 + "\n")],
)
def test_a_tag_or_digest_with_a_newline_is_refused(tag: str | None, digest: str | None) -> None:
    with pytest.raises(ValueError, match="is not"):
        Image("registry.example/svc", tag, digest)


def test_ordinary_names_tags_and_digests_pass() -> None:
    assert check_name("service", "svc-a1") == "svc-a1"
    assert Image("registry.example/svc", "1.2.3_rc-1", "sha256:" + "0" * 64).tag == "1.2.3_rc-1"


def test_services_are_ordered_by_name_not_by_file_name(tmp_path: Path) -> None:
    # "x-next.yaml" sorts before "x.yaml" ('-' < '.'), the names the other way round
    fleet = make_fleet(tmp_path / "fleet", ["x-next", "x"])
    assert load_repo(fleet.root).services == ("x", "x-next")
