"""Only the image changes: the rest of a values file survives byte for byte."""

from __future__ import annotations

import difflib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from platformctl.imagefile import set_image
from platformctl.model import TAG_PATTERN, Image, load_repo
from platformctl.yamlio import mapping_of, read_mapping
from tests.conftest import PROJECT_ROOT

# every values file with an image line, whatever services and environments this repository has
FILES = sorted(release.values_file for release in load_repo(PROJECT_ROOT).releases.values())

tags = st.from_regex(TAG_PATTERN, fullmatch=True)
digests = st.none() | st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(FILES), tag=tags, digest=digests)
def test_a_promotion_is_a_one_line_diff(path: Path, tag: str, digest: str | None) -> None:
    before = path.read_text()
    repository = read_mapping(path)["image"]["repository"]
    image = Image(repository, tag, digest)
    after = set_image(path, image)
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0)
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert len(changed) <= 2  # one line out, one line in (none when equal)
    assert all(line[1:].startswith("image: {") for line in changed)
    data = mapping_of(after, path)  # parsed as it would be read, without writing it anywhere
    original = read_mapping(path)
    assert {k: v for k, v in data.items() if k != "image"} == {
        k: v for k, v in original.items() if k != "image"
    }
    expected = {"repository": repository, "tag": tag} | ({"digest": digest} if digest else {})
    assert data["image"] == expected


def test_block_style_image_keeps_its_layout(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(
        "# comment stays\n"
        "image:\n"
        "  repository: r.example/svc   # the registry\n"
        "  tag: '1.0'\n"
        "replicaCount: 2  # two\n"
    )
    after = set_image(path, Image("r.example/svc", "1.1", "sha256:" + "a" * 64))
    assert after == (
        "# comment stays\n"
        "image:\n"
        "  repository: r.example/svc   # the registry\n"
        '  tag: "1.1"\n'
        f'  digest: "sha256:{"a" * 64}"\n'
        "replicaCount: 2  # two\n"
    )
    dropped = tmp_path / "dropped.yaml"
    dropped.write_text(after)
    assert "digest" not in set_image(dropped, Image("r.example/svc", "1.2"))


def test_trailing_comment_on_the_flow_line_survives(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("image: {repository: r/x, tag: a}  # pinned by CI\nreplicaCount: 1\n")
    after = set_image(path, Image("r/x", "true"))
    assert after == 'image: {repository: r/x, tag: "true"}  # pinned by CI\nreplicaCount: 1\n'


def test_an_indented_image_line_is_found_by_the_parser(tmp_path: Path) -> None:
    """Only a top-level ``image:`` in column 0 takes the fast path; a nested one is not it."""
    path = tmp_path / "svc.yaml"
    path.write_text(
        "sidecar:\n  image: {repository: r/side, tag: a}\nimage: {repository: r/x, tag: a}\n"
    )
    after = set_image(path, Image("r/x", "b"))
    assert after == (
        "sidecar:\n  image: {repository: r/side, tag: a}\nimage: {repository: r/x, tag: b}\n"
    )
    path.write_text(
        "sidecar:\n  image: {repository: r/side, tag: a}\nimage:\n  repository: r/x\n  tag: a\n"
    )
    after = set_image(path, Image("r/x", "b"))
    assert after.endswith("image:\n  repository: r/x\n  tag: b\n")
    assert "r/side, tag: a}" in after
