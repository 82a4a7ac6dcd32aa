"""The ahead-of-time compiled encoder: same embeddings as eager, the last batch padded to its bucket, packages built
once and then loaded from the cache by the next runtime (as another actor would), a new key per precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.runtime.compiled_encoder import CompiledEncoder
from pipeline.runtime.torch_backend import TorchSam
from tests.fixtures import fixture_images, fixture_model


def _canvases() -> tuple[np.ndarray, np.ndarray]:
    images = list(fixture_images().values())
    canvases = np.zeros((3, 512, 512, 3), np.uint8)
    hw = []
    for i, image in enumerate(images):
        h, w = min(image.shape[0], 512), min(image.shape[1], 512)
        canvases[i, :h, :w] = image[:h, :w]
        hw.append((h, w))
    return canvases, np.array(hw)


def test_batches_run_in_bucket_pieces_the_last_padded() -> None:
    encoder = CompiledEncoder.__new__(CompiledEncoder)
    encoder.buckets = (1, 2, 8)
    assert encoder.pieces(3) == [(0, 3, 8)]
    assert encoder.pieces(8) == [(0, 8, 8)]
    assert encoder.pieces(19) == [(0, 8, 8), (8, 8, 8), (16, 3, 8)]
    assert encoder.pieces(9) == [(0, 8, 8), (8, 1, 1)]


def test_compiled_encoder_equals_eager_and_is_built_once(tmp_path) -> None:
    canvases, hw = _canvases()
    eager = TorchSam(fixture_model("l"), precision="fp32", channels_last=True)
    expected = eager.encode(canvases, hw)
    compiled = TorchSam(
        fixture_model("l"), channels_last=True, aot_compile=True, compile_buckets=(2,), compile_cache=tmp_path
    )
    got = compiled.encode(canvases, hw)  # 3 images: a piece of 2, then 1 padded to 2
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4
    assert compiled.compiled.compile_seconds[2] > 0
    assert len(list(tmp_path.glob("*.pt2"))) == 1

    again = TorchSam(
        fixture_model("l"), channels_last=True, aot_compile=True, compile_buckets=(2,), compile_cache=tmp_path
    )
    assert torch.equal(again.encode(canvases[:2], hw[:2]), got[:2])
    assert again.compiled.compile_seconds == {2: 0.0}  # loaded, not built


def test_the_cache_key_changes_with_weights_precision_and_bucket(tmp_path) -> None:
    def encoder(model, precision="fp32") -> CompiledEncoder:
        return CompiledEncoder(
            model.image_encoder,
            device=torch.device("cpu"),
            precision=precision,
            channels_last=False,
            input_size=512,
            cache_folder=tmp_path,
        )

    model = fixture_model("l")
    base = encoder(model)
    assert base.package_path(2) == encoder(fixture_model("l")).package_path(2)
    assert base.package_path(2) != base.package_path(4)
    assert base.package_path(2) != encoder(model, "bf16").package_path(2)
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(1e-3)
    assert base.package_path(2) != encoder(model).package_path(2)


@pytest.mark.parametrize("buckets", [(), (0, 2)])
def test_bad_buckets_are_refused(buckets, tmp_path) -> None:
    with pytest.raises(ValueError, match="buckets"):
        CompiledEncoder(
            fixture_model("l").image_encoder,
            device=torch.device("cpu"),
            precision="fp32",
            channels_last=False,
            input_size=512,
            cache_folder=tmp_path,
            buckets=buckets,
        )
