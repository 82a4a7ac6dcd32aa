"""Input roots: image URIs outside the allowed roots are refused, after resolving ``..`` and (when asked) symlinks."""

from __future__ import annotations

import os

import pytest

from pipeline.io.roots import OutsideRootsError, check_within_roots, is_within


@pytest.mark.parametrize(
    ("uri", "root", "inside"),
    [
        ("/data/in/a.jpg", "/data/in", True),
        ("/data/in/sub/../a.jpg", "/data/in", True),
        ("/data/in/../../etc/passwd", "/data/in", False),
        ("/data/input2/a.jpg", "/data/in", False),  # a sibling sharing the prefix is not inside
        ("file:///data/in/a.jpg", "/data/in/", True),
        ("s3://bucket/in/a.jpg", "s3://bucket/in", True),
        ("s3://bucket/in/../secret/a.jpg", "s3://bucket/in", False),
        ("s3://bucket/in/../../other/in/a.jpg", "s3://bucket/in", False),
        ("s3://bucket2/in/a.jpg", "s3://bucket/in", False),
        ("s3://bucket/in/a.jpg", "/bucket/in", False),  # another scheme
    ],
)
def test_is_within(uri, root, inside):
    assert is_within(uri, root) is inside


def test_symlinks_out_of_a_root_are_outside_when_resolved(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", tmp_path / "in" / "link.jpg")
    uri = str(tmp_path / "in" / "link.jpg")
    assert is_within(uri, str(tmp_path / "in"))
    assert not is_within(uri, str(tmp_path / "in"), resolve_links=True)


def test_the_first_outside_uri_is_named_in_one_line():
    with pytest.raises(OutsideRootsError, match=r"'/elsewhere/x.jpg' is outside the allowed input roots") as info:
        check_within_roots(["/in/a.jpg", "/elsewhere/x.jpg"], ["/in"])
    assert "\n" not in str(info.value)
