"""The encoder in inference form (BatchNorm folded, activations fused) computes the encoder as written, on the
fixture models with non-trivial BatchNorm statistics, and leaves the model it was made from untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.models.efficientvit import ConvLayer
from pipeline.models.fused_encoder import FusedConvLayer, fuse_for_inference, onednn_fusion_available
from pipeline.runtime.torch_backend import TorchSam
from tests.fixtures import fixture_images, fixture_model, needs_bf16

ONEDNN = [False, pytest.param(True, marks=pytest.mark.skipif(not onednn_fusion_available(), reason="no oneDNN"))]


def _with_running_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """The fixtures' BatchNorms hold fresh statistics (mean 0, var 1); trained ones do not."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=g)
            module.running_var.uniform_(0.05, 4, generator=g)
            module.weight.data.uniform_(0.5, 1.5, generator=g)
            module.bias.data.normal_(0, 0.2, generator=g)
    return model


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("onednn", ONEDNN)
@pytest.mark.parametrize("arch", ["l", "xl"])
@torch.inference_mode()
def test_fused_encoder_equals_the_encoder_in_fp32(arch: str, onednn: bool) -> None:
    encoder = _with_running_statistics(fixture_model(arch)).image_encoder
    size = 1024 if arch == "xl" else 512
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    fused = fuse_for_inference(encoder, onednn=onednn)
    assert not any(isinstance(m, (ConvLayer, nn.BatchNorm2d)) for m in fused.modules())
    assert _relative(fused(x), encoder(x)) <= 1e-5  # the fixtures' tolerance for the embedding


@needs_bf16
@pytest.mark.parametrize("onednn", ONEDNN)
@torch.inference_mode()
def test_fused_encoder_under_cpu_autocast_runs_in_bf16(onednn: bool) -> None:
    encoder = _with_running_statistics(fixture_model("l")).image_encoder
    fused = fuse_for_inference(encoder, onednn=onednn).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    expected = encoder(x)
    layer = next(m for m in fused.modules() if isinstance(m, FusedConvLayer))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        out = fused(x.contiguous(memory_format=torch.channels_last))
    assert _relative(out, expected) <= 0.05  # bf16 rounding through every stage, not a different function


def test_the_original_model_is_left_as_it_is() -> None:
    model = _with_running_statistics(fixture_model("l"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model.image_encoder)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert model.image_encoder.norm.weight is fused.norm.weight  # parameters that are not folded are shared


def test_a_layer_that_cannot_be_fused_is_named() -> None:
    layer = ConvLayer(4, 8, act=None)
    layer.act = nn.SiLU()
    with pytest.raises(ValueError, match="SiLU"):
        FusedConvLayer(layer, onednn=False)


@torch.inference_mode()
def test_runtime_masks_with_the_fused_encoder_equal_the_encoder_as_written() -> None:
    model = _with_running_statistics(fixture_model("l"))
    image = next(iter(fixture_images().values()))
    canvas = np.zeros((1, 512, 512, 3), np.uint8)
    h, w = min(image.shape[0], 512), min(image.shape[1], 512)
    canvas[0, :h, :w] = image[:h, :w]
    hw = np.array([[h, w]])
    fused = TorchSam(model, channels_last=True).encode(canvas, hw)
    written = TorchSam(model, channels_last=True, fuse_encoder=False).encode(canvas, hw)
    assert _relative(fused, written) <= 1e-5
