"""Storage access through local paths, file:// and moto's S3 server on loopback, with the real pyarrow client."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import boto3
import pytest

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import (
    FileTooLargeError,
    delete,
    exists,
    fetch,
    filesystem,
    join_uri,
    list_files,
    parse_hf_uri,
    read_bytes,
    sha256_file,
    write_bytes,
)

LOCAL = StorageConfig()


def test_local_round_trip_creates_folders_and_lists_sorted(tmp_path: Path) -> None:
    for name, data in [("b/z.bin", b"zz"), ("a.bin", b"a"), ("b/c/y.bin", b"yyy")]:
        write_bytes(str(tmp_path / "root" / name), data, LOCAL)
    assert read_bytes(str(tmp_path / "root" / "b" / "c" / "y.bin"), LOCAL) == b"yyy"
    root = tmp_path / "root"
    assert list_files(str(root), LOCAL) == [
        (str(root / "a.bin"), 1),
        (str(root / "b" / "c" / "y.bin"), 3),
        (str(root / "b" / "z.bin"), 2),
    ]
    assert list_files(str(root), LOCAL, recursive=False) == [(str(root / "a.bin"), 1)]
    assert list_files(str(tmp_path / "nothing-here"), LOCAL) == []


def test_relative_paths_and_file_uris_reach_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "with space" / "img 1.jpg"
    write_bytes(str(target), b"pixels", LOCAL)
    monkeypatch.chdir(tmp_path)
    assert read_bytes("with space/img 1.jpg", LOCAL) == b"pixels"
    assert read_bytes(target.as_uri(), LOCAL) == b"pixels"  # percent-encoded file:///.../img%201.jpg
    assert filesystem("with space/img 1.jpg", LOCAL)[1] == str(target)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    uri = str(tmp_path / "out" / "result.json")
    write_bytes(uri, b"old", LOCAL)
    with pytest.raises(TypeError):
        write_bytes(uri, 12345, LOCAL)  # fails half-way through the write
    assert read_bytes(uri, LOCAL) == b"old"
    write_bytes(uri, b"new", LOCAL)
    assert read_bytes(uri, LOCAL) == b"new"
    assert os.listdir(tmp_path / "out") == ["result.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(uri).st_mode) == 0o666 & ~umask  # like any new file, not a private temp file


def test_exists_and_delete_local(tmp_path: Path) -> None:
    uri = str(tmp_path / "f.txt")
    assert not exists(uri, LOCAL)
    write_bytes(uri, b"x", LOCAL)
    assert exists(uri, LOCAL) and exists(str(tmp_path), LOCAL)
    delete(uri, LOCAL)
    delete(uri, LOCAL)  # already gone: fine
    assert not exists(uri, LOCAL)
    with pytest.raises(ValueError, match="is a folder"):
        delete(str(tmp_path), LOCAL)


def test_s3_round_trip_listing_and_delete(s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    base = f"s3://{s3_bucket}/run"
    write_bytes(f"{base}/b/two.bin", b"22", storage)
    write_bytes(f"{base}/a.bin", b"1", storage)
    write_bytes(f"{base}/data.json.gz", b"not gzip", storage)  # stored as given, no compression by extension
    write_bytes(f"s3://{s3_bucket}/run2/other.bin", b"elsewhere", storage)
    assert read_bytes(f"{base}/b/two.bin", storage) == b"22"
    assert read_bytes(f"{base}/data.json.gz", storage) == b"not gzip"
    assert list_files(base + "/", storage) == [
        (f"{base}/a.bin", 1),
        (f"{base}/b/two.bin", 2),
        (f"{base}/data.json.gz", 8),
    ]
    assert exists(base, storage) and exists(f"{base}/a.bin", storage)
    delete(f"{base}/a.bin", storage)
    delete(f"{base}/a.bin", storage)
    assert not exists(f"{base}/a.bin", storage)
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/run/a.bin"):
        read_bytes(f"{base}/a.bin", storage)
    body = boto3.client("s3", endpoint_url=s3_endpoint).get_object(Bucket=s3_bucket, Key="run/b/two.bin")["Body"]
    assert body.read() == b"22"


def test_endpoint_comes_from_config_then_environment(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=s3_bucket, Key="k.txt", Body=b"hello")
    uri = f"s3://{s3_bucket}/k.txt"
    dead = "http://127.0.0.1:9"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert read_bytes(uri, StorageConfig()) == b"hello"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    assert read_bytes(uri, StorageConfig()) == b"hello"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    assert read_bytes(uri, StorageConfig(s3_endpoint_url=s3_endpoint)) == b"hello"
    with pytest.raises(OSError, match="127.0.0.1:9"):
        read_bytes(uri, StorageConfig(max_attempts=1))
    fs_a, _ = filesystem(uri, StorageConfig(s3_endpoint_url=s3_endpoint))
    fs_b, _ = filesystem(f"s3://{s3_bucket}/other", StorageConfig(s3_endpoint_url=s3_endpoint))
    assert fs_a is fs_b


def test_too_large_files_are_refused_without_reading(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    for uri in (str(tmp_path / "big.bin"), f"s3://{s3_bucket}/big.bin"):
        write_bytes(uri, b"x" * 100, storage)
        assert read_bytes(uri, storage, max_bytes=100) == b"x" * 100
        with pytest.raises(FileTooLargeError, match=r"big\.bin: 100 bytes is over the limit of 99 bytes"):
            read_bytes(uri, storage, max_bytes=99)
    assert issubclass(FileTooLargeError, ValueError)


@pytest.mark.parametrize("uri", ["gs://bucket/img.jpg", "http://example.com/img.jpg", "hf://o/r/w.pt"])
def test_unsupported_schemes_name_the_uri(uri: str) -> None:
    with pytest.raises(ValueError, match=f"unsupported URI {uri}: use a local path, file:// or s3://"):
        read_bytes(uri, LOCAL)


def test_malformed_uris() -> None:
    with pytest.raises(ValueError, match="missing bucket name"):
        read_bytes("s3:///key", LOCAL)
    with pytest.raises(ValueError, match="needs an absolute path"):
        read_bytes("file://relative/x.jpg", LOCAL)
    with pytest.raises(ValueError, match="unsupported URI gs://b/w.pt: use a local path, file://, s3:// or hf://"):
        fetch("gs://b/w.pt", LOCAL)


def test_join_uri_and_sha256(tmp_path: Path) -> None:
    assert join_uri("s3://b/x/", "y/", "/z.jpg") == "s3://b/x/y/z.jpg"
    assert join_uri("/data", "a", "") == "/data/a"
    assert join_uri("/", "a") == "/a"
    assert join_uri("file:///out/", "coco.json") == "file:///out/coco.json"
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 5_000_000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 5_000_000).hexdigest()


def test_fetch_local_returns_the_file_itself(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    assert fetch(str(path), LOCAL) == path
    assert fetch(path.as_uri(), LOCAL) == path
    with pytest.raises(ValueError, match=r"nope\.pt: no such file$"):
        fetch(str(tmp_path / "nope.pt"), LOCAL)


def test_fetch_s3_downloads_once_per_object_version(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    uri = f"s3://{s3_bucket}/weights/model.pt"
    write_bytes(uri, b"version one", storage)
    first = fetch(uri, storage, cache_dir=tmp_path / "cache")
    assert first.is_relative_to(tmp_path / "cache") and first.name == "model.pt"
    assert first.read_bytes() == b"version one"
    inode = first.stat().st_ino
    again = fetch(uri, storage, cache_dir=tmp_path / "cache")
    assert again == first and again.stat().st_ino == inode  # served from the cache, not written again
    write_bytes(uri, b"version two, longer", storage)
    updated = fetch(uri, storage, cache_dir=tmp_path / "cache")
    assert updated != first and updated.read_bytes() == b"version two, longer"
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".part")]
    with pytest.raises(ValueError, match=f"cannot download s3://{s3_bucket}/weights/missing.pt: no such object"):
        fetch(f"s3://{s3_bucket}/weights/missing.pt", storage, cache_dir=tmp_path / "cache")


def test_parse_hf_uri() -> None:
    assert parse_hf_uri("hf://mit-han-lab/efficientvit-sam/efficientvit_sam_l0.pt") == (
        "mit-han-lab/efficientvit-sam",
        None,
        "efficientvit_sam_l0.pt",
    )
    assert parse_hf_uri("hf://o/r@v1.0/sub/dir/w.safetensors") == ("o/r", "v1.0", "sub/dir/w.safetensors")
    for bad in ("hf://o/r", "hf://o//w.pt", "hf://o/@main/w.pt"):
        with pytest.raises(ValueError, match=r"expected hf://owner/repo\[@revision\]/path/in/repo"):
            parse_hf_uri(bad)


def test_fetch_hf_not_cached_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as info:
        fetch("hf://owner/repo@main/w.pt", LOCAL, cache_dir=tmp_path)
    assert str(info.value) == "cannot download hf://owner/repo@main/w.pt: offline and not in the Hugging Face cache"
