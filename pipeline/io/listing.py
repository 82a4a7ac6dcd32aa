"""Input listing: a folder, ``file://`` folder, ``s3://`` prefix or a manifest → a table of images to label.

The table has string columns ``image_id`` and ``image_uri``, sorted by ``image_id``, without duplicates. Ids are
deterministic: for folders and prefixes the POSIX path relative to the input root (a local run and an S3 run over
the same tree agree); for manifests the entry exactly as written. ``image_uri`` is what ``read_bytes`` accepts: an
absolute local path or ``s3://bucket/key``. Every problem with the input is a one-line ValueError raised before
any image is read.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config.sections import IMAGE_EXTENSIONS, StorageConfig
from pipeline.io.storage import describe_error, filesystem, list_files, read_bytes, split_uri, uri_scheme
from pipeline.schema import IMAGE_ID, IMAGE_URI

__all__ = ["IMAGE_EXTENSIONS", "MANIFEST_SUFFIXES", "URI_COLUMNS", "image_id_for", "list_images"]

MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet")
URI_COLUMNS = ("image_uri", "uri", "path", "url")
"""Manifest columns tried in this order when no column is named."""

log = logging.getLogger(__name__)


def list_images(
    input_uri: str,
    storage: StorageConfig,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    manifest_column: str | None = None,
) -> pa.Table:
    """The images of ``input_uri`` as a table (``image_id``, ``image_uri``) sorted by ``image_id``.

    Folders and prefixes are listed recursively, keeping files whose extension is in ``extensions`` (any case).
    ``.txt`` / ``.csv`` / ``.parquet`` inputs are manifests; their entries are not filtered by extension, relative
    entries resolve against the manifest's folder, and later duplicates are dropped (with a log line).
    """
    if input_uri.lower().endswith(MANIFEST_SUFFIXES):
        ids, uris = _manifest_images(input_uri, storage, manifest_column)
    else:
        ids, uris = _folder_images(input_uri, storage, extensions)
    # Arrow columns as soon as possible: a manifest of millions of entries must not live on as Python objects.
    table = pa.table({IMAGE_ID: pa.array(ids, pa.string()), IMAGE_URI: pa.array(uris, pa.string())})
    del ids, uris
    return table.sort_by(IMAGE_ID)


def image_id_for(root_uri: str, file_uri: str) -> str:
    """Id of a listed file: its POSIX path relative to the listed folder or prefix ``root_uri``."""
    prefix = root_uri.rstrip("/") + "/"
    if not file_uri.startswith(prefix):
        raise ValueError(f"{file_uri} is not under {root_uri}")
    return file_uri[len(prefix) :]


def _folder_images(input_uri: str, storage: StorageConfig, extensions: tuple[str, ...]) -> tuple[list[str], list[str]]:
    suffixes = tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)
    fs, root = filesystem(input_uri, storage)
    try:
        kind = fs.get_file_info(root).type
        files = list_files(input_uri, storage) if kind == pafs.FileType.Directory else []
    except OSError as exc:
        raise ValueError(f"cannot list input {input_uri}: {describe_error(exc)}") from exc
    if kind == pafs.FileType.NotFound:
        raise ValueError(f"input {input_uri} does not exist")
    if kind != pafs.FileType.Directory:
        raise ValueError(
            f"input {input_uri} is a file: give a folder, an s3:// prefix or a .txt/.csv/.parquet manifest"
        )
    root_uri = root if isinstance(fs, pafs.LocalFileSystem) else f"s3://{root}"
    uris = [uri for uri, _ in files if uri.lower().endswith(suffixes)]
    if not uris:
        raise ValueError(f"no images in {input_uri} (looked for {', '.join(suffixes)}, any case)")
    return [image_id_for(root_uri, uri) for uri in uris], uris


def _manifest_images(uri: str, storage: StorageConfig, column: str | None) -> tuple[list[str], list[str]]:
    try:
        data = read_bytes(uri, storage)
    except FileNotFoundError:
        raise ValueError(f"input {uri} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read manifest {uri}: {describe_error(exc)}") from exc
    suffix = os.path.splitext(uri.lower())[1]
    if suffix == ".txt":
        raw = [line.strip() for line in _text(uri, data).splitlines()]
        raw = [line for line in raw if line and not line.startswith("#")]
    elif suffix == ".csv":
        raw = _csv_entries(uri, data, column)
    else:
        raw = _parquet_entries(uri, data, column)
    entries = pc.unique(pa.array(raw, pa.string())).to_pylist()  # the first of each, in the manifest's order
    if len(entries) < len(raw):
        log.warning("manifest %s: dropped %d duplicate entries (kept the first of each)", uri, len(raw) - len(entries))
    del raw
    if not entries:
        raise ValueError(f"manifest {uri} lists no images")
    return entries, [_resolve_entry(uri, entry) for entry in entries]


def _text(uri: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"manifest {uri} is not UTF-8 text ({describe_error(exc)})") from exc


def _csv_entries(uri: str, data: bytes, column: str | None) -> list[str]:
    rows = csv.reader(io.StringIO(_text(uri, data)))
    header = [name.strip() for name in next(rows, [])]
    index = header.index(_pick_column(uri, header, column))
    return [row[index].strip() for row in rows if len(row) > index and row[index].strip()]


def _parquet_entries(uri: str, data: bytes, column: str | None) -> list[str]:
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"manifest {uri} is not a Parquet file ({describe_error(exc)})") from exc
    name = _pick_column(uri, parquet.schema_arrow.names, column)
    values = parquet.read(columns=[name]).column(name)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise ValueError(f"manifest {uri}: column {name!r} holds {values.type}, not strings")
    return [value.strip() for value in values.to_pylist() if value and value.strip()]


def _pick_column(uri: str, names: list[str], column: str | None) -> str:
    found = ", ".join(names) or "none"
    if column is not None:
        if column in names:
            return column
        raise ValueError(f"manifest {uri} has no column {column!r} (columns found: {found})")
    for candidate in URI_COLUMNS:
        if candidate in names:
            return candidate
    if len(names) == 1:
        return names[0]
    raise ValueError(
        f"manifest {uri} has no {'/'.join(URI_COLUMNS)} column (columns found: {found}); set input.manifest_column"
    )


def _resolve_entry(manifest_uri: str, entry: str) -> str:
    """Absolute URI of a manifest entry; relative entries are relative to the manifest's folder."""
    if uri_scheme(entry) is not None or entry.startswith(("/", "~")):
        try:
            kind, path = split_uri(entry)
        except ValueError as exc:
            raise ValueError(f"manifest {manifest_uri}: bad entry {entry!r}: {exc}") from None
        return path if kind == "file" else f"s3://{path}"
    kind, manifest_path = split_uri(manifest_uri)
    folder = os.path.dirname(manifest_path)
    if kind == "file":
        return os.path.normpath(os.path.join(folder, entry))
    bucket = manifest_path.split("/", 1)[0]
    key_path = posixpath.normpath(posixpath.join(folder, entry))
    if not key_path.startswith(f"{bucket}/"):
        raise ValueError(f"manifest {manifest_uri}: entry {entry!r} points outside bucket {bucket}")
    return f"s3://{key_path}"
