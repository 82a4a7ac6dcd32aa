"""Model folders from where users keep them: an s3:// prefix (moto's server through the real clients) is fetched file
by file, model files only; hf://owner/repo[@revision] is a snapshot from the Hugging Face cache (offline here); the
fetched folder has the local folder's identity and loads as a classifier."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import boto3
import pytest

from pipeline.bench.text_models import write_tiny_classifier
from pipeline.classify.classifier import check_classifier
from pipeline.config.sections import ClassifyConfig, StorageConfig
from pipeline.models.hub_folder import folder_sha256, model_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_tiny_classifier(tmp_path_factory.mktemp("clip") / "clip")
    (folder / "pytorch_model.bin").write_bytes(b"a pickle, never fetched")
    return folder


def test_an_s3_prefix_is_fetched_with_its_model_files_only(clip: Path, s3_endpoint, s3_bucket, tmp_path) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in clip.iterdir():
        client.upload_file(str(path), s3_bucket, f"models/clip/{path.name}")
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    folder = model_folder(f"s3://{s3_bucket}/models/clip", storage, str(tmp_path / "cache"), "classify.weights")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in clip.iterdir() if p.suffix != ".bin")
    assert folder_sha256(folder) == folder_sha256(clip)
    cfg = ClassifyConfig(classes=("box",), weights=f"s3://{s3_bucket}/models/clip/")
    assert check_classifier(cfg, storage, str(tmp_path / "cache")) == check_classifier(
        ClassifyConfig(classes=("box",), weights=str(clip)), storage, None
    )
    with pytest.raises(ValueError, match="no model files under this prefix"):
        model_folder(f"s3://{s3_bucket}/nothing", storage, str(tmp_path / "cache"), "classify.weights")


def test_an_hf_repo_is_a_snapshot_from_the_cache(clip: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hf" / "models--owner--clip"
    for path in clip.iterdir():
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / COMMIT / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for uri in ("hf://owner/clip", "hf://owner/clip@main"):
        folder = model_folder(uri, StorageConfig(), str(tmp_path / "hf"), "classify.weights")
        assert folder_sha256(folder) == folder_sha256(clip)
    with pytest.raises(ValueError, match="cannot download hf://owner/other"):
        model_folder("hf://owner/other", StorageConfig(), str(tmp_path / "hf"), "classify.weights")


def test_a_path_that_is_not_a_folder_is_refused(clip: Path) -> None:
    with pytest.raises(ValueError, match=r"classify.weights .*config.json: not a folder"):
        model_folder(str(clip / "config.json"), StorageConfig(), None, "classify.weights")
