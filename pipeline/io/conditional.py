"""Compare-and-swap on one small object: create if absent, replace or delete only if unchanged (no Ray).

S3 (and S3-compatible stores that implement conditional writes, e.g. moto and MinIO): ``PutObject`` with
``If-None-Match: *`` creates only when the key is absent, ``If-Match: <etag>`` replaces or deletes only the version
that was read; a 412 means another writer won. Local files: creation is ``link(2)`` of a finished temp file (atomic,
fails when the name exists), and replace/delete hold an exclusive ``flock`` on a ``.<name>.guard`` file next to the
object while they compare and swap, so they are atomic among processes of one machine (or of an NFS mount with
working locks). The version of a local file is the sha256 of its content.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st

_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "409", "412"}


@dataclass(frozen=True)
class Versioned:
    data: bytes
    version: str
    """S3 ETag, or the sha256 of a local file's content."""


def read_versioned(uri: str, storage: StorageConfig) -> Versioned | None:
    """The object's content and version, or None when it does not exist."""
    scheme, path = st.split_uri(uri)
    if scheme == "file":
        try:
            with open(path, "rb") as src:
                data = src.read()
        except FileNotFoundError:
            return None
        return Versioned(data, hashlib.sha256(data).hexdigest())
    bucket, key = path.split("/", 1)
    client = st.s3_client(storage)
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return Versioned(response["Body"].read(), response["ETag"])


def create_if_absent(uri: str, data: bytes, storage: StorageConfig) -> bool:
    """Creates the object with ``data``; False (nothing written) when it already exists."""
    scheme, path = st.split_uri(uri)
    if scheme == "file":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = _write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    return _s3_call("put_object", path, storage, Body=data, IfNoneMatch="*")


def replace_if_version(uri: str, data: bytes, version: str, storage: StorageConfig) -> bool:
    """Replaces the object only if its version is still ``version``; False (nothing written) otherwise."""
    scheme, path = st.split_uri(uri)
    if scheme == "file":
        with guard(path):
            current = read_versioned(uri, storage)
            if current is None or current.version != version:
                return False
            os.replace(_write_temp(path, data), path)
            return True
    return _s3_call("put_object", path, storage, Body=data, IfMatch=version)


def delete_if_version(uri: str, version: str, storage: StorageConfig) -> bool:
    """Deletes the object only if its version is still ``version``; False otherwise."""
    scheme, path = st.split_uri(uri)
    if scheme == "file":
        with guard(path):
            current = read_versioned(uri, storage)
            if current is None or current.version != version:
                return False
            os.unlink(path)
            return True
    return _s3_call("delete_object", path, storage, IfMatch=version)


def _s3_call(method: str, path: str, storage: StorageConfig, **kwargs: object) -> bool:
    """True when the conditional request was applied, False when its precondition failed (another writer won)."""
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    try:
        getattr(st.s3_client(storage), method)(Bucket=bucket, Key=key, **kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _LOST_RACE or status in _LOST_RACE:
            return False
        raise
    return True


def _write_temp(path: str, data: bytes) -> str:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return tmp


@contextlib.contextmanager
def guard(path: str) -> Iterator[None]:
    """An exclusive lock among this machine's processes on the local file ``path`` (which need not exist): a
    ``flock`` on ``.<name>.guard`` next to it."""
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.guard")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
