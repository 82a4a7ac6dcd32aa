"""Checkpoint loading: strict, from local / S3 (moto) / an offline Hugging Face cache, never unpickling objects."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import boto3
import pytest
import torch
from safetensors.torch import save_file

from pipeline.config.sections import StorageConfig
from pipeline.models import create_model
from pipeline.models.checkpoint import CheckpointError, is_safetensors, load_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_marker(path: str) -> None:
    Path(path).write_text("code ran")


class Payload:
    """Unpickling this object calls ``_write_marker``: the kind of file a weights loader must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (str(self.marker),))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _error(model: torch.nn.Module, uri: str, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, uri, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _hf_cache(cache: Path, repo_id: str, filename: str, source: Path) -> None:
    """The Hugging Face hub cache layout for one file at revision ``main`` (commit COMMIT)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True)
    shutil.copyfile(source, blob)
    link = repo / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def l0_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state_dict = create_model("efficientvit-sam-l0", seed=1).state_dict()
    path = tmp_path_factory.mktemp("l0") / "efficientvit_sam_l0.pt"
    torch.save(state_dict, path)
    return path, state_dict


@pytest.fixture()
def mini_l_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state_dict = create_model("mini-l", seed=5).state_dict()
    path = tmp_path / "mini_l.pt"
    torch.save(state_dict, path)
    return path, state_dict


def test_l0_bare_state_dict_from_a_local_path(l0_weights: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, expected = l0_weights
    model = create_model("l0")
    assert not _same(model.state_dict(), expected)
    digest = load_checkpoint(model, str(path), model_name="efficientvit-sam-l0")
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _same(model.state_dict(), expected)


def test_l0_wrapped_state_dict_from_s3(
    l0_weights: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    _, expected = l0_weights
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": expected}, wrapped)
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(str(wrapped), s3_bucket, "ckpt/l0.pt")
    model = create_model("l0")
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    digest = load_checkpoint(model, f"s3://{s3_bucket}/ckpt/l0.pt", storage=storage, cache_dir=tmp_path / "cache")
    assert digest == hashlib.sha256(wrapped.read_bytes()).hexdigest()
    assert _same(model.state_dict(), expected)


@pytest.mark.slow  # long: in the slow set that .ci/run runs after the default one
def test_xl0_state_dict_from_a_local_path_and_from_s3(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    expected = create_model("efficientvit-sam-xl0", seed=2).state_dict()
    path = tmp_path / "efficientvit_sam_xl0.pt"
    torch.save(expected, path)
    local = create_model("xl0")
    load_checkpoint(local, str(path), model_name="efficientvit-sam-xl0")
    assert _same(local.state_dict(), expected)
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(str(path), s3_bucket, "ckpt/xl0.pt")
    remote = create_model("xl0")
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    load_checkpoint(remote, f"s3://{s3_bucket}/ckpt/xl0.pt", storage=storage, cache_dir=tmp_path / "cache")
    assert _same(remote.state_dict(), expected)


def test_fp16_safetensors_detected_by_content(tmp_path: Path) -> None:
    source = create_model("mini-xl", seed=3).state_dict()
    path = tmp_path / "weights.bin"  # no .safetensors suffix: the content decides
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in source.items()}, path)
    assert is_safetensors(path) and not is_safetensors(__file__)
    model = create_model("mini-xl")
    load_checkpoint(model, str(path))
    loaded = model.state_dict()
    assert {v.dtype for v in loaded.values() if v.is_floating_point()} == {torch.float32}
    assert _same(loaded, {k: (v.half().float() if v.is_floating_point() else v) for k, v in source.items()})


def test_bn_counters_may_be_left_out_of_a_plain_dict(tmp_path: Path) -> None:
    source = create_model("mini-l", seed=2).state_dict()
    trimmed = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    assert len(trimmed) < len(source)
    torch.save(trimmed, tmp_path / "trimmed.pt")
    model = create_model("mini-l")
    load_checkpoint(model, str(tmp_path / "trimmed.pt"))
    assert _same({k: v for k, v in model.state_dict().items() if k in trimmed}, trimmed)


def test_extra_entries_next_to_the_wrapped_state_dict_are_ignored(mini_l_file, tmp_path: Path) -> None:
    _, expected = mini_l_file
    torch.save({"state_dict": expected, "epoch": 7, "arch": "mini-l"}, tmp_path / "with_meta.pt")
    model = create_model("mini-l")
    load_checkpoint(model, str(tmp_path / "with_meta.pt"))
    assert _same(model.state_dict(), expected)


def test_a_meta_model_is_checked_without_warnings(mini_l_file, recwarn: pytest.WarningsRecorder) -> None:
    path, _ = mini_l_file
    digest = load_checkpoint(create_model("mini-l", device="meta"), str(path))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not recwarn.list


def test_l0_weights_into_xl0_name_the_differences(l0_weights: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, _ = l0_weights
    message = _error(create_model("xl0", device="meta"), str(path), model_name="efficientvit-sam-xl0")
    assert message.startswith(f"{path}: does not fit efficientvit-sam-xl0: ")
    assert " missing keys (e.g. " in message and " unexpected keys (e.g. " in message
    assert message.endswith("; is it a checkpoint of another variant?")


def test_mini_l_into_mini_xl_fails_before_touching_the_model(mini_l_file) -> None:
    path, _ = mini_l_file
    model = create_model("mini-xl")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = _error(model, str(path), model_name="mini-xl")
    assert "does not fit mini-xl" in message and "missing keys" in message and "unexpected keys" in message
    assert _same(model.state_dict(), before)


def test_a_reshaped_tensor_is_reported_with_both_shapes(tmp_path: Path) -> None:
    state_dict = create_model("mini-l").state_dict()
    key = "mask_decoder.iou_token.weight"
    state_dict[key] = torch.zeros(2, 7)
    torch.save(state_dict, tmp_path / "reshaped.pt")
    message = _error(create_model("mini-l"), str(tmp_path / "reshaped.pt"))
    expected_shape = list(create_model("mini-l", device="meta").state_dict()[key].shape)
    assert f"1 keys with another shape (e.g. {key}: file [2, 7] vs model {expected_shape})" in message
    assert "missing" not in message and "unexpected" not in message


def test_truncated_file_is_corrupted(mini_l_file, tmp_path: Path) -> None:
    path, _ = mini_l_file
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _error(create_model("mini-l"), str(truncated))
    assert message.startswith(f"{truncated}: corrupted, truncated or not a checkpoint (")
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    assert _error(create_model("mini-l"), str(text)).startswith(f"{text}: corrupted")


def test_pickled_python_objects_are_refused_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "payload.pt"
    torch.save({"weight": torch.ones(2), "extra": Payload(marker)}, path)
    message = _error(create_model("mini-l"), str(path))
    assert message.startswith(f"{path}: refused: the file holds pickled Python objects (")
    assert "_write_marker" in message and message.endswith("plain state dicts of tensors saved by torch.save")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what an unsafe loader would have done
    assert marker.read_text() == "code ran"


def test_values_must_be_tensors(tmp_path: Path) -> None:
    torch.save({"weight": torch.ones(2), "epoch": 3}, tmp_path / "mixed.pt")
    message = _error(create_model("mini-l"), str(tmp_path / "mixed.pt"))
    assert message == f"{tmp_path / 'mixed.pt'}: not a plain state dict: 'epoch' holds a int, not a tensor " + (
        "(only plain state dicts of tensors are loaded)"
    )
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    assert "holds a list, not a state dict" in _error(create_model("mini-l"), str(tmp_path / "list.pt"))


def test_sha256_is_checked(mini_l_file) -> None:
    path, _ = mini_l_file
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = "0" * 64
    message = _error(create_model("mini-l"), str(path), expected_sha256=wrong)
    assert message == f"{path}: sha256 is {actual}, expected {wrong}"
    assert load_checkpoint(create_model("mini-l"), str(path), expected_sha256=actual.upper()) == actual


def test_missing_local_file(tmp_path: Path) -> None:
    assert _error(create_model("mini-l"), str(tmp_path / "none.pt")) == f"{tmp_path / 'none.pt'}: no such file"


@pytest.mark.parametrize(
    "uri", ["hf://owner/repo/w/mini.pt", "hf://owner/repo@main/w/mini.pt", f"hf://owner/repo@{COMMIT}/w/mini.pt"]
)
def test_hf_uri_from_an_offline_cache(uri: str, mini_l_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, expected = mini_l_file
    _hf_cache(tmp_path / "hf", "owner/repo", "w/mini.pt", path)
    model = create_model("mini-l")
    assert load_checkpoint(model, uri, cache_dir=tmp_path / "hf") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _same(model.state_dict(), expected)


def test_hf_file_missing_from_the_offline_cache(mini_l_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hf_cache(tmp_path / "hf", "owner/repo", "w/mini.pt", mini_l_file[0])
    message = _error(create_model("mini-l"), "hf://owner/repo/w/other.pt", cache_dir=tmp_path / "hf")
    assert message == "cannot download hf://owner/repo/w/other.pt: offline and not in the Hugging Face cache"


@pytest.mark.parametrize("protocol", [2, 4])
def test_the_job_line_for_a_pickle_gives_no_advice_to_unpickle_it(tmp_path: Path, capsys, protocol: int) -> None:
    # PyTorch's own message suggests weights_only=False: never advice to give about an untrusted file.
    from jobs.label import main

    marker = tmp_path / "marker.txt"
    path = tmp_path / "payload.pt"
    torch.save({"extra": Payload(marker)}, path, pickle_protocol=protocol)
    args = ["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--model", "mini-l", "--weights", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"samlabel: error: CheckpointError: {path}: ")
    assert "pickled Python objects (" in err or "pickle data that cannot be read safely" in err
    assert "weights_only" not in err and "trust" not in err and not marker.exists()
