"""Registry of EfficientViT-SAM variants and their model cards.

A card carries what travels with the weights (encoder input size, default weight URI, licence), so no code
branches on model names. Names: ``efficientvit-sam-{l0,l1,l2,xl0,xl1}`` (short forms ``l0`` ... accepted), the
tiny ``mini-l`` / ``mini-xl`` architectures of the parity fixtures (random weights, for tests), and ``demo-shapes``,
the small architecture ``jobs.train_sam`` trains on the generated shapes data, whose trained weights ship in
``pipeline/models/weights/`` with a card (sha256, the command that made them, validation numbers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.models.efficientvit import EfficientViTLargeBackbone
from pipeline.models.sam import EfficientViTSam, SamNeck, build_efficientvit_sam

HF_REPO = "mit-han-lab/efficientvit-sam"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_CARD_FILE = WEIGHTS_DIR / "demo_shapes.json"
L_BLOCKS = ("res", "fmb", "fmb", "mb", "att")
XL_BLOCKS = ("res", "fmb", "fmb", "fmb", "att@3", "att@3")
XL_EXPAND = (1, 4, 4, 4, 4, 6)
XL_FEWER_NORM = (False, False, False, False, True, True)


@dataclass(frozen=True)
class ModelCard:
    name: str
    """Registry name."""
    encoder_input_size: int
    """Side S of the square encoder input (512 for L models, 1024 for XL)."""
    default_weights: str | None
    """Weight URI used when none is given; None means random init (test/demo models only)."""
    description: str
    """One line for ``--help`` and run.json."""
    license: str = "Apache-2.0"
    """Licence of the default weights."""
    default_weights_sha256: str | None = None
    """sha256 the default weights must have (checked when they are loaded)."""


def _l_model(depths: list[int], neck_depth: int, mlp_dim: int = 2048, iou_hidden: int = 256) -> EfficientViTSam:
    backbone = EfficientViTLargeBackbone(width_list=[32, 64, 128, 256, 512], depth_list=depths, block_list=L_BLOCKS)
    neck = SamNeck(
        fid_list=["stage4", "stage3", "stage2"],
        in_channel_list=[512, 256, 128],
        head_width=256,
        head_depth=neck_depth,
        expand_ratio=1,
    )
    return build_efficientvit_sam(
        backbone=backbone, neck=neck, encoder_input_size=512, mlp_dim=mlp_dim, iou_head_hidden_dim=iou_hidden
    )


def _xl_model(depths: list[int], neck_depth: int) -> EfficientViTSam:
    backbone = EfficientViTLargeBackbone(
        width_list=[32, 64, 128, 256, 512, 1024],
        depth_list=depths,
        block_list=XL_BLOCKS,
        expand_list=XL_EXPAND,
        fewer_norm_list=XL_FEWER_NORM,
    )
    neck = SamNeck(
        fid_list=["stage5", "stage4", "stage3"],
        in_channel_list=[1024, 512, 256],
        head_width=256,
        head_depth=neck_depth,
        expand_ratio=4,
    )
    return build_efficientvit_sam(backbone=backbone, neck=neck, encoder_input_size=1024)


def _mini_l() -> EfficientViTSam:
    backbone = EfficientViTLargeBackbone(width_list=[8, 16, 32, 64, 64], depth_list=[1] * 5, block_list=L_BLOCKS)
    neck = SamNeck(
        fid_list=["stage4", "stage3", "stage2"],
        in_channel_list=[64, 64, 32],
        head_width=32,
        head_depth=1,
        expand_ratio=1,
    )
    return build_efficientvit_sam(
        backbone=backbone, neck=neck, encoder_input_size=512, mlp_dim=128, iou_head_hidden_dim=64
    )


def _mini_xl() -> EfficientViTSam:
    backbone = EfficientViTLargeBackbone(
        width_list=[8, 8, 16, 32, 64, 64],
        depth_list=[1] * 6,
        block_list=XL_BLOCKS,
        expand_list=XL_EXPAND,
        fewer_norm_list=XL_FEWER_NORM,
    )
    neck = SamNeck(
        fid_list=["stage5", "stage4", "stage3"],
        in_channel_list=[64, 64, 32],
        head_width=32,
        head_depth=1,
        expand_ratio=4,
    )
    return build_efficientvit_sam(
        backbone=backbone, neck=neck, encoder_input_size=1024, mlp_dim=128, iou_head_hidden_dim=64
    )


def _demo_shapes() -> EfficientViTSam:
    # 256 px input and a 48-channel embedding: the mask decoder is what CPU training pays for, and its cost grows
    # with the embedding width (docs/performance.md). Cross-attention keeps the full
    # width (no 2x downsampling): at 32 channels and 8 dims per head a trained model segmented every object
    # whatever the prompt. stage1 is already 64×64 at 256 px, so the neck fuses it unresampled with the attention
    # stage's context.
    backbone = EfficientViTLargeBackbone(
        width_list=[16, 32, 64, 96, 128], depth_list=[1, 1, 1, 2, 2], block_list=L_BLOCKS
    )
    neck = SamNeck(
        fid_list=["stage4", "stage2", "stage1"],
        in_channel_list=[128, 64, 32],
        head_width=48,
        head_depth=2,
        expand_ratio=2,
        out_dim=48,
    )
    model = build_efficientvit_sam(
        backbone=backbone,
        neck=neck,
        encoder_input_size=256,
        mlp_dim=192,
        iou_head_hidden_dim=64,
        num_heads=2,
        attention_downsample_rate=1,
    )
    # 24 random Fourier frequencies at SAM's scale 1 resolve positions to ~1/10 of the image, too coarse for small
    # objects; spread them over scales 1..16 (the matrix is a buffer, so the weight file carries it).
    gaussian = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix  # [2,24]
    gaussian.mul_(torch.logspace(0, 4, gaussian.shape[1], base=2.0))
    # Cross-attention queries and keys start as the identity, so attention between image positions and prompt
    # tokens starts out as the positional kernel PE(pixel)·PE(prompt), peaked where they coincide. With random
    # projections a model trained from scratch learned to segment every object and ignore the prompt.
    transformer = model.mask_decoder.transformer
    cross = [
        m for layer in transformer.layers for m in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)
    ]
    with torch.no_grad():
        for attention in [*cross, transformer.final_attn_token_to_image]:
            for proj in (attention.q_proj, attention.k_proj):
                proj.weight.copy_(torch.eye(*proj.weight.shape))
                proj.bias.zero_()
    return model


def _demo_card() -> ModelCard:
    """The demo model's card: its committed weights and their sha256 come from ``weights/demo_shapes.json``."""
    card = json.loads(DEMO_CARD_FILE.read_text())
    return ModelCard(
        "demo-shapes",
        256,
        str(WEIGHTS_DIR / card["weights"]),
        "small EfficientViT-SAM trained on the generated shapes data (48-channel embedding, 256px input)",
        default_weights_sha256=card["sha256"],
    )


def _official(variant: str, size: int) -> ModelCard:
    return ModelCard(
        name=f"efficientvit-sam-{variant}",
        encoder_input_size=size,
        default_weights=f"hf://{HF_REPO}/efficientvit_sam_{variant}.pt",
        description=f"EfficientViT-SAM-{variant.upper()} (official checkpoint, {size}px encoder input)",
    )


_BUILDERS: dict[str, tuple[Callable[[], EfficientViTSam], ModelCard]] = {
    "efficientvit-sam-l0": (lambda: _l_model([1, 1, 1, 4, 4], 4), _official("l0", 512)),
    "efficientvit-sam-l1": (lambda: _l_model([1, 1, 1, 6, 6], 8), _official("l1", 512)),
    "efficientvit-sam-l2": (lambda: _l_model([1, 2, 2, 8, 8], 12), _official("l2", 512)),
    "efficientvit-sam-xl0": (lambda: _xl_model([0, 1, 1, 2, 3, 3], 6), _official("xl0", 1024)),
    "efficientvit-sam-xl1": (lambda: _xl_model([1, 2, 2, 4, 6, 6], 12), _official("xl1", 1024)),
    "mini-l": (_mini_l, ModelCard("mini-l", 512, None, "tiny L-style test model (random weights unless given)")),
    "mini-xl": (_mini_xl, ModelCard("mini-xl", 1024, None, "tiny XL-style test model (random weights unless given)")),
    "demo-shapes": (_demo_shapes, _demo_card()),
}
ALIASES = {
    "l0": "efficientvit-sam-l0",
    "l1": "efficientvit-sam-l1",
    "l2": "efficientvit-sam-l2",
    "xl0": "efficientvit-sam-xl0",
    "xl1": "efficientvit-sam-xl1",
}
MODEL_NAMES = tuple(_BUILDERS)


def resolve_name(name: str) -> str:
    """Canonical registry name for ``name`` or a short form; ValueError naming the choices otherwise."""
    canonical = ALIASES.get(name, name)
    if canonical not in _BUILDERS:
        choices = ", ".join(list(_BUILDERS) + list(ALIASES))
        raise ValueError(f"unknown model {name!r}; choose one of: {choices}")
    return canonical


def model_card(name: str) -> ModelCard:
    return _BUILDERS[resolve_name(name)][1]


def create_model(name: str, *, seed: int = 0, device: str | torch.device = "cpu") -> EfficientViTSam:
    """Builds ``name`` in eval mode with seeded random weights (load a checkpoint on top for real use).

    ``device="meta"`` builds the structure without allocating memory (for key/shape checks).
    """
    builder = _BUILDERS[resolve_name(name)][0]
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        return builder()
