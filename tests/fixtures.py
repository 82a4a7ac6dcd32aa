"""Shared test data: the parity fixtures from the official EfficientViT-SAM code and helpers to load them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.models import EfficientViTSam, create_model
from pipeline.runtime.capability import bf16_unsupported_reason

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SAMLABEL_FIXTURES", REPO.parent / "shared" / "fixtures" / "efficientvit_sam"))
OFFICIAL_VARIANTS = ("l0", "l1", "l2", "xl0", "xl1")

_NO_BF16 = bf16_unsupported_reason(torch.device("cpu"))
needs_bf16 = pytest.mark.skipif(_NO_BF16 is not None, reason=f"bf16 does not run on this CPU: {_NO_BF16}")
"""For tests that run bf16 convolutions on the CPU or go through the driver's bf16 gate."""


def fixture_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """Full fp32 state dict of the fixture model ``mini-l`` / ``mini-xl`` (stored as fp16, exactly representable)."""
    sd = {**load_file(FIXTURES / "mini_head.safetensors"), **load_file(FIXTURES / f"mini_{arch}_encoder.safetensors")}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def fixture_model(arch: str) -> EfficientViTSam:
    model = create_model(f"mini-{arch}")
    model.load_state_dict(fixture_state_dict(arch), strict=True)
    return model


def fixture_images() -> dict[str, np.ndarray]:
    """``{"img0": ..., "img1": ..., "img2": ...}`` HWC uint8 RGB."""
    data = np.load(FIXTURES / "images.npz")
    return {name.split("_")[0]: data[name] for name in data.files}


def fixture_refs(arch: str) -> np.lib.npyio.NpzFile:
    return np.load(FIXTURES / f"mini_{arch}.npz")


def write_fixture_weights(path: Path, arch: str) -> Path:
    """The fixture model's weights as one checkpoint file (a bare state dict saved with torch.save)."""
    torch.save(fixture_state_dict(arch), path)
    return path


def decoded_batch(images: list[np.ndarray], image_ids: list[str], long_side: int) -> dict[str, np.ndarray]:
    """What the decode operator hands to the segment operator for these images."""
    from pipeline import schema as col
    from pipeline.segment.geometry import resize_longest_side

    resized = [resize_longest_side(image, long_side) for image in images]
    n = len(images)
    return {
        col.IMAGE_ID: np.array(image_ids, dtype=object),
        col.IMAGE_URI: np.array([f"/in/{i}" for i in image_ids], dtype=object),
        col.IMAGE_RGB: np.array([np.ascontiguousarray(r).tobytes() for r in resized], dtype=object),
        col.INPUT_H: np.array([r.shape[0] for r in resized], np.int32),
        col.INPUT_W: np.array([r.shape[1] for r in resized], np.int32),
        col.IMAGE_HEIGHT: np.array([i.shape[0] for i in images], np.int32),
        col.IMAGE_WIDTH: np.array([i.shape[1] for i in images], np.int32),
        col.ERROR_STAGE: np.array([None] * n, dtype=object),
        col.ERROR_TYPE: np.array([None] * n, dtype=object),
        col.ERROR_MESSAGE: np.array([None] * n, dtype=object),
    }


def write_random_autoppn_head(path: Path) -> Path:
    """A seeded random AutoPPN head (16 channels, stride 16) whose point logits peak above the threshold, saved to
    ``path``; returns the path."""
    from pipeline.prompts.autoppn.checkpoint import save_head
    from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard

    torch.manual_seed(0)
    head = AutoPPN(AutoPPNCard(channels=16, out_stride=16))
    torch.nn.init.constant_(head.point_head[-1].bias, 0.0)
    return save_head(head, path)
