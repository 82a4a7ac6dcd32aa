"""Shared test data: the parity fixtures from the official EfficientViT-SAM code and helpers to load them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from pipeline.models import EfficientViTSam, create_model

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SAMLABEL_FIXTURES", REPO.parent / "shared" / "fixtures" / "efficientvit_sam"))
OFFICIAL_VARIANTS = ("l0", "l1", "l2", "xl0", "xl1")


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
