"""Byte-level access to local paths, ``file://`` and ``s3://`` URIs through pyarrow filesystems, and ``fetch``.

URIs: a local path (relative or absolute), ``file:///abs/path`` or ``s3://bucket/key``. S3 goes through
``pyarrow.fs.S3FileSystem`` with the standard AWS credential chain; endpoint, region, anonymity and retries come
from :class:`StorageConfig` and the usual ``AWS_*`` environment variables. Filesystem objects are cached per
process and options. ``fetch`` (weight files) also accepts ``hf://owner/repo[@revision]/path/in/repo``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from pipeline.config.sections import StorageConfig

DEFAULT_CACHE_DIR = Path("~/.cache/samlabel")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL = pafs.LocalFileSystem()
_CHUNK = 8 << 20


class FileTooLargeError(ValueError):
    """The object is larger than the caller's limit; it was not read."""


def describe_error(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` with whitespace collapsed, for one-line error reports."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def uri_scheme(uri: str) -> str | None:
    """Lower-case scheme of ``uri`` (``"s3"``, ``"file"``, ``"hf"``, ...) or None for a plain local path."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def split_uri(uri: str) -> tuple[str, str]:
    """``("file", absolute local path)`` or ``("s3", "bucket/key")``; ValueError for any other form."""
    scheme = uri_scheme(uri)
    if scheme is None:
        if not uri.strip():
            raise ValueError("empty URI: expected a local path, file:// or s3:// URI")
        return "file", os.path.abspath(os.path.expanduser(uri))
    rest = uri[len(scheme) + 3 :]
    if scheme == "file":
        rest = rest.removeprefix("localhost")
        if not rest.startswith("/"):
            raise ValueError(f"{uri}: a file:// URI needs an absolute path (file:///path/to/file)")
        return "file", os.path.abspath(unquote(rest))
    if scheme == "s3":
        path = rest.rstrip("/")
        if not path.split("/", 1)[0]:
            raise ValueError(f"{uri}: missing bucket name (expected s3://bucket/key)")
        return "s3", path
    raise ValueError(f"unsupported URI {uri}: use a local path, file:// or s3://")


def _s3_options(storage: StorageConfig) -> tuple[str | None, str, bool, int]:
    endpoint = storage.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = storage.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if storage.max_attempts < 1:
        raise ValueError(f"storage.max_attempts must be at least 1, got {storage.max_attempts}")
    return endpoint or None, region, storage.s3_anonymous, storage.max_attempts


def s3_endpoint_parts(endpoint: str) -> tuple[str, str, str | None, str | None]:
    """``(scheme, host[:port][/path], access key, secret key)`` of an endpoint URL.

    Users write full URLs (``http://127.0.0.1:9000``); MinIO-style ``http://KEY:SECRET@host`` carries credentials,
    which are returned apart so that they never travel inside a URL that could be logged.
    """
    parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    key = unquote(parsed.username) if parsed.username else None
    secret = unquote(parsed.password) if parsed.password else None
    return parsed.scheme, netloc + parsed.path.rstrip("/"), key, secret


@functools.lru_cache(maxsize=16)
def _s3_filesystem(endpoint: str | None, region: str, anonymous: bool, max_attempts: int) -> pafs.S3FileSystem:
    kwargs: dict = {
        "region": region,
        "anonymous": anonymous,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
    }
    if endpoint:
        scheme, override, key, secret = s3_endpoint_parts(endpoint)
        kwargs.update(scheme=scheme, endpoint_override=override)
        if key and secret:
            kwargs.update(access_key=key, secret_key=secret)
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=16)
def _s3_client(endpoint: str | None, region: str, anonymous: bool, max_attempts: int) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"})
    if anonymous:
        config = config.merge(Config(signature_version=UNSIGNED))
    kwargs: dict = {"region_name": region, "config": config}
    if endpoint:
        scheme, override, key, secret = s3_endpoint_parts(endpoint)
        kwargs["endpoint_url"] = f"{scheme}://{override}"
        if key and secret:
            kwargs.update(aws_access_key_id=key, aws_secret_access_key=secret)
    return boto3.session.Session().client("s3", **kwargs)


def s3_client(storage: StorageConfig) -> Any:
    """A (cached) boto3 S3 client with the same endpoint, region, credentials and retries as the filesystem.

    Used for what pyarrow's filesystem cannot do: conditional writes (``If-None-Match`` / ``If-Match``).
    """
    return _s3_client(*_s3_options(storage))


def filesystem(uri: str, storage: StorageConfig) -> tuple[pafs.FileSystem, str]:
    """The (cached) pyarrow filesystem for ``uri`` and the path inside it (absolute local path or ``bucket/key``)."""
    scheme, path = split_uri(uri)
    if scheme == "file":
        return _LOCAL, path
    return _s3_filesystem(*_s3_options(storage)), path


def _file_info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: no such file or object")
    if info.type != pafs.FileType.File:
        raise IsADirectoryError(f"{uri}: is a folder, not a file")
    return info


def read_bytes(uri: str, storage: StorageConfig, max_bytes: int | None = None) -> bytes:
    """Whole content of ``uri``. FileNotFoundError if missing; FileTooLargeError (not read) if over ``max_bytes``."""
    fs, path = filesystem(uri, storage)
    info = _file_info(fs, path, uri)
    if max_bytes is not None and info.size > max_bytes:
        raise FileTooLargeError(f"{uri}: {info.size} bytes is over the limit of {max_bytes} bytes")
    with fs.open_input_stream(path, compression=None) as stream:
        return stream.readall()


def _write_local_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # The path goes into the message itself: Ray replaces the file name when it re-raises a task's error.
        raise OSError(exc.errno, f"{exc.strerror} writing {path}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(uri: str, data: bytes, storage: StorageConfig) -> None:
    """Writes ``data`` atomically: readers see the old object or the new one, never a partial file."""
    fs, path = filesystem(uri, storage)
    if fs is _LOCAL:
        _write_local_atomic(path, data)
        return
    # An S3 object becomes visible only when its upload completes, so a direct write is already atomic.
    with fs.open_output_stream(path, compression=None) as out:
        out.write(data)


@contextlib.contextmanager
def open_writer(uri: str, storage: StorageConfig) -> Iterator[BinaryIO]:
    """A binary stream to ``uri`` for files too large to hold in memory. Locally readers see the file only when the
    block ends without an error (a temporary file renamed); on S3 the object appears when its upload completes, and
    an upload cut short by an error is deleted again (the store cannot abandon it)."""
    fs, path = filesystem(uri, storage)
    if fs is not _LOCAL:
        out = fs.open_output_stream(path, compression=None)
        try:
            yield out
        except BaseException:
            out.close()
            fs.delete_file(path)
            raise
        out.close()
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def copy_file(src_uri: str, dst_uri: str, storage: StorageConfig) -> None:
    """Copies one file or object; S3 to S3 is a server-side copy, anything else goes through :func:`write_bytes`."""
    src_fs, src_path = filesystem(src_uri, storage)
    dst_fs, dst_path = filesystem(dst_uri, storage)
    if src_fs is not _LOCAL and dst_fs is src_fs:
        src_fs.copy_file(src_path, dst_path)
        return
    write_bytes(dst_uri, read_bytes(src_uri, storage), storage)


def exists(uri: str, storage: StorageConfig) -> bool:
    """True when ``uri`` is an existing file, folder or non-empty S3 prefix."""
    fs, path = filesystem(uri, storage)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete(uri: str, storage: StorageConfig) -> None:
    """Deletes the file or object ``uri``; a missing one is fine, a folder is a ValueError."""
    fs, path = filesystem(uri, storage)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.File:
        raise ValueError(f"{uri}: is a folder; delete removes single files only")
    fs.delete_file(path)


def list_files(prefix_uri: str, storage: StorageConfig, recursive: bool = True) -> list[tuple[str, int]]:
    """``(uri, size)`` of the files under the folder or prefix ``prefix_uri``, sorted by uri; [] if it is missing.

    URIs are absolute local paths for local inputs and ``s3://bucket/key`` for S3.
    """
    fs, path = filesystem(prefix_uri, storage)
    selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
    prefix = "" if fs is _LOCAL else "s3://"
    files = [(prefix + info.path, info.size) for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]
    return sorted(files)


def join_uri(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined by single slashes (``join_uri("s3://b/x/", "y", "z.jpg") == "s3://b/x/y/z.jpg"``)."""
    head = base.rstrip("/")
    tail = "/".join(part.strip("/") for part in parts if part.strip("/"))
    if not tail:
        return head or base
    return f"{head}/{tail}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(uri: str, storage: StorageConfig, cache_dir: str | Path | None = None) -> Path:
    """A local copy of the weights file ``uri``; every failure is a one-line ValueError naming ``uri``.

    Local paths are returned as they are. ``s3://`` objects are downloaded once per version (size and mtime) into
    ``cache_dir`` (default ``~/.cache/samlabel``). ``hf://owner/repo[@revision]/file`` goes through the Hugging
    Face cache (``cache_dir`` when given, else the Hub's default) and works offline from a filled cache.
    """
    scheme = uri_scheme(uri)
    if scheme == "hf":
        return _fetch_hf(uri, cache_dir)
    if scheme not in (None, "file", "s3"):
        raise ValueError(f"unsupported URI {uri}: use a local path, file://, s3:// or hf://")
    kind, path = split_uri(uri)
    if kind == "file":
        if not os.path.isfile(path):
            raise ValueError(f"{uri}: no such file")
        return Path(path)
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    try:
        return _fetch_s3(uri, path, storage, root.expanduser())
    except ValueError:
        raise
    except OSError as exc:
        raise ValueError(f"cannot download {uri}: {describe_error(exc)}") from exc


def _fetch_s3(uri: str, path: str, storage: StorageConfig, cache_root: Path) -> Path:
    fs, _ = filesystem(uri, storage)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise ValueError(f"cannot download {uri}: no such object")
    endpoint = _s3_options(storage)[0] or ""
    key = hashlib.sha256(f"{endpoint}|{uri}".encode()).hexdigest()[:16]
    target = cache_root / "s3" / key / f"{info.size}-{info.mtime_ns}" / posixpath.basename(path)
    if target.is_file() and target.stat().st_size == info.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        with fs.open_input_stream(path, compression=None) as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        if tmp.stat().st_size != info.size:
            raise ValueError(f"cannot download {uri}: got {tmp.stat().st_size} of {info.size} bytes")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def parse_hf_uri(uri: str) -> tuple[str, str | None, str]:
    """``hf://owner/repo[@revision]/path/in/repo`` as ``(repo_id, revision or None, filename)``."""
    parts = uri[len("hf://") :].split("/", 2)
    if len(parts) < 3 or not all(parts) or parts[1].startswith("@"):
        raise ValueError(f"{uri}: expected hf://owner/repo[@revision]/path/in/repo")
    owner, repo, filename = parts
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", revision or None, filename


def _hf_offline() -> bool:
    import huggingface_hub

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or huggingface_hub.is_offline_mode()


def _fetch_hf(uri: str, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    repo_id, revision, filename = parse_hf_uri(uri)
    offline = _hf_offline()
    try:
        local = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        cause = "offline and not in the Hugging Face cache" if offline else "the Hub cannot be reached"
        raise ValueError(f"cannot download {uri}: {cause}") from exc
    except Exception as exc:
        raise ValueError(f"cannot download {uri}: {describe_error(exc)}") from exc
    return Path(local)
