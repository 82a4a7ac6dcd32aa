"""Input roots: every image URI a run reads must lie inside an allowed folder or prefix (pure, no Ray).

URIs are compared after normalisation: ``..`` and ``.`` segments are resolved (so ``/in/../etc/x.jpg`` is
``/etc/x.jpg`` and ``s3://b/in/../../c/x`` leaves bucket ``b``), and, when asked, local symlinks are resolved
too, so a link inside an allowed folder that points outside it is outside.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence

from pipeline.io import storage as st


class OutsideRootsError(ValueError):
    """An image URI lies outside every allowed root."""


def normalized(uri: str, resolve_links: bool = False) -> tuple[str, str]:
    """``(scheme, path)`` with ``..`` resolved: an absolute local path, or ``bucket/key`` for S3."""
    scheme, path = st.split_uri(uri)
    if scheme == "file":
        return scheme, os.path.realpath(path) if resolve_links else os.path.normpath(path)
    if path.startswith("/") or path.split("/", 1)[0] in ("", ".", ".."):
        return scheme, "/"  # never inside a bucket
    return scheme, posixpath.normpath(path)


def is_within(uri: str, root: str, resolve_links: bool = False) -> bool:
    """Whether ``uri`` is ``root`` itself or lies below it (same scheme, whole path segments)."""
    scheme, path = normalized(uri, resolve_links)
    root_scheme, root_path = normalized(root, resolve_links)
    if scheme != root_scheme:
        return False
    return path == root_path or path.startswith(root_path.rstrip("/") + "/")


def check_within_roots(uris: Iterable[str], roots: Sequence[str], resolve_links: bool = False) -> None:
    """Raises OutsideRootsError naming the first URI that lies outside every root in ``roots``."""
    for uri in uris:
        if not any(is_within(uri, root, resolve_links) for root in roots):
            raise OutsideRootsError(
                f"image {uri!r} is outside the allowed input roots ({', '.join(roots)}); "
                f"refusing the run (set input.allowed_roots to allow it)"
            )
