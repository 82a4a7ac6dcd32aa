"""The read operator, called directly on numpy batches: good files are read, bad ones become error rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from operators.read import read_images
from pipeline.config.sections import StorageConfig
from pipeline.io.storage import write_bytes
from pipeline.schema import ERROR_MESSAGE, ERROR_STAGE, ERROR_TYPE, IMAGE_BYTES, IMAGE_ID, IMAGE_URI


def _batch(uris: list[str], **extra: list) -> dict[str, np.ndarray]:
    batch = {IMAGE_ID: np.array([f"id{i}" for i in range(len(uris))], dtype=object), IMAGE_URI: np.array(uris)}
    batch.update({name: np.array(values, dtype=object) for name, values in extra.items()})
    return batch


def test_good_missing_and_too_large_files(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint, max_attempts=2)
    local_ok, local_big = str(tmp_path / "ok.jpg"), str(tmp_path / "big.jpg")
    s3_ok, s3_big = f"s3://{s3_bucket}/ok.png", f"s3://{s3_bucket}/big.png"
    for uri, data in [(local_ok, b"local"), (local_big, b"x" * 64), (s3_ok, b"remote"), (s3_big, b"y" * 64)]:
        write_bytes(uri, data, storage)
    uris = [local_ok, str(tmp_path / "gone.jpg"), local_big, s3_ok, f"s3://{s3_bucket}/gone.png", s3_big]
    labels = ["a", "b", "c", "d", "e", "f"]
    out = read_images(_batch(uris, label=labels), storage, max_file_bytes=63)

    assert list(out[IMAGE_BYTES]) == [b"local", b"", b"", b"remote", b"", b""]
    assert list(out[ERROR_STAGE]) == [None, "read", "read", None, "read", "read"]
    assert list(out[ERROR_TYPE]) == [None, "missing", "too_large", None, "missing", "too_large"]
    assert out[ERROR_MESSAGE][0] is None and out[ERROR_MESSAGE][3] is None
    assert out[ERROR_MESSAGE][1] == f"{tmp_path / 'gone.jpg'}: no such file or object"
    assert out[ERROR_MESSAGE][5] == f"{s3_big}: 64 bytes is over the limit of 63 bytes"
    assert list(out["label"]) == labels and list(out[IMAGE_ID]) == [f"id{i}" for i in range(6)]
    assert list(out[IMAGE_URI]) == uris


def test_unreadable_uris_are_read_failed_rows(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(b"ok")
    uris = [str(tmp_path), "gs://bucket/img.jpg", str(good)]
    out = read_images(_batch(uris), StorageConfig(), max_file_bytes=1 << 20)
    assert list(out[ERROR_TYPE]) == ["read_failed", "read_failed", None]
    assert list(out[IMAGE_BYTES]) == [b"", b"", b"ok"]
    assert "is a folder" in out[ERROR_MESSAGE][0]
    assert (
        out[ERROR_MESSAGE][1] == "ValueError: unsupported URI gs://bucket/img.jpg: use a local path, file:// or s3://"
    )
    assert all("\n" not in message for message in out[ERROR_MESSAGE] if message)


def test_rows_that_failed_earlier_are_not_read(tmp_path: Path) -> None:
    first, second = tmp_path / "1.jpg", tmp_path / "2.jpg"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    batch = _batch(
        [str(first), str(second)],
        **{ERROR_STAGE: ["read", None], ERROR_TYPE: ["missing", None], ERROR_MESSAGE: ["set upstream", None]},
    )
    out = read_images(batch, StorageConfig(), max_file_bytes=100)
    assert list(out[IMAGE_BYTES]) == [b"", b"two"]
    assert list(out[ERROR_TYPE]) == ["missing", None]
    assert list(out[ERROR_MESSAGE]) == ["set upstream", None]
