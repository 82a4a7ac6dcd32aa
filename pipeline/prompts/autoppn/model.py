"""The AutoPPN head (what is computed) and its config card (what travels with the weights).

Input: the SAM image embedding [B,C,64,64] (C = ``card.embed_dim``, 256 for the official models; one cell = 16 px
of the 1024 prompt frame). Output, at stride
``out_stride`` of the 1024 frame (8: 128×128 cells, a ×2 bilinear upsample + 3×3 conv; 16: 64×64 cells):
a point heatmap per size group (sigmoid, [B,G,H,W]) and box regressions per group ([B,G,4,H,W], see
:mod:`pipeline.prompts.autoppn.boxes`). Layout, as in the Lite-SAM paper: a 1×1 stem, MSPM
blocks (multi-scale average pooling 3/5/9 + a ConvFFN, residual), a point head and a box head.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

CARD_FORMAT = "samlabel-autoppn/1"
EMBED_CELLS = 64
PRIOR_BIAS = -2.19  # sigmoid(-2.19) ≈ 0.1: the heatmap starts near "no object" so early losses stay small
BOX_PRIOR_PX = 64.0  # the box head starts at boxes reaching 64 px (1024 frame) from the centre on each side
POOL_SIZES = (3, 5, 9)  # MSPM average pools, stride 1, padding k // 2, count_include_pad=False (the spec)


@dataclass(frozen=True)
class AutoPPNCard:
    """Architecture and target settings of one AutoPPN checkpoint (stored with its weights)."""

    channels: int = 128
    """Width C of the head."""
    mspm_blocks: int = 2
    """Number of MSPM blocks."""
    out_stride: int = 8
    """Output stride in the 1024 frame: 8 (128×128 cells) or 16 (64×64)."""
    group_thresholds: tuple[float, float] = (0.05, 0.25)
    """Size groups by r = max(box w, h) / max(image h, w): small r <= a, medium a < r < b, large r >= b."""
    embed_dim: int = 256
    """Channels C of the SAM embedding it reads (256 for every official model; cards without it mean 256)."""
    sam_model: str = ""
    """The SAM model whose embedding it was trained on (informational)."""
    format: str = CARD_FORMAT
    """Card format version."""

    @property
    def groups(self) -> int:
        return len(self.group_thresholds) + 1

    @property
    def grid_cells(self) -> int:
        """Cells per side of the output grid."""
        return 1024 // self.out_stride

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str, where: str) -> AutoPPNCard:
        """Strict parse: unknown keys, a wrong format or bad values raise ValueError naming ``where``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: the AutoPPN card is not valid JSON ({exc.msg})") from None
        known = {f.name for f in dataclasses.fields(AutoPPNCard)}
        if not isinstance(data, dict) or set(data) - known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else data
            raise ValueError(f"{where}: unknown AutoPPN card keys {extra}; a card has {sorted(known)}")
        if data.get("format") != CARD_FORMAT:
            raise ValueError(f"{where}: AutoPPN card format {data.get('format')!r}, expected {CARD_FORMAT!r}")
        if "group_thresholds" in data:
            data["group_thresholds"] = tuple(data["group_thresholds"])
        card = AutoPPNCard(**data)
        card.validate(where)
        return card

    def validate(self, where: str = "autoppn card") -> None:
        if self.out_stride not in (8, 16):
            raise ValueError(f"{where}: out_stride must be 8 or 16, got {self.out_stride}")
        if self.channels < 1 or self.mspm_blocks < 0 or self.embed_dim < 1:
            raise ValueError(f"{where}: channels and embed_dim must be >= 1 and mspm_blocks >= 0")
        a, b = self.group_thresholds
        if not 0 < a < b < 1:
            raise ValueError(f"{where}: group_thresholds must satisfy 0 < small < large < 1, got {a}, {b}")


def _conv_bn_gelu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each cell's k×k window, cells outside the map left out: ``AvgPool2d(k, 1, k // 2,
    count_include_pad=False)`` of ``x`` [B,C,H,W]. Two depthwise convolutions with ones and a division by the window's
    cell count: on CPUs PyTorch's pooling loops over the window per output, several times slower (training too)."""
    c, h, w = x.shape[1:]
    r = k // 2
    sums = F.conv2d(x, x.new_ones(c, 1, k, 1), padding=(r, 0), groups=c)
    sums = F.conv2d(sums, x.new_ones(c, 1, 1, k), padding=(0, r), groups=c)  # [B,C,H,W]
    return sums / (_window_cells(h, r, x)[:, None] * _window_cells(w, r, x)[None, :])


def _window_cells(n: int, r: int, like: torch.Tensor) -> torch.Tensor:
    index = torch.arange(n, device=like.device)
    return ((index + r + 1).clamp(max=n) - (index - r).clamp(min=0)).to(like.dtype)  # [n]


class MSPM(nn.Module):
    """Multi-scale pooling module: ``x + GELU(BN(1×1[x, avg3, avg5, avg9]))``, then ``x + FFN(x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(4 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.GELU())
        self.ffn = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1), nn.GELU(), nn.Conv2d(2 * channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(torch.cat([x, *(box_mean(x, k) for k in POOL_SIZES)], dim=1))
        return x + self.ffn(x)


class AutoPPN(nn.Module):
    """The proposal head; ``forward`` returns (heat [B,G,H,W] in [0,1], box t [B,G,4,H,W])."""

    def __init__(self, card: AutoPPNCard) -> None:
        super().__init__()
        card.validate()
        self.card = card
        c, g = card.channels, card.groups
        self.stem = _conv_bn_gelu(card.embed_dim, c, 1)
        self.blocks = nn.Sequential(*(MSPM(c) for _ in range(card.mspm_blocks)))
        self.refine = _conv_bn_gelu(c, c, 3) if card.out_stride == 8 else nn.Identity()
        self.point_head = nn.Sequential(_conv_bn_gelu(c, c, 3), nn.Conv2d(c, g, 1))
        self.box_head = nn.Sequential(_conv_bn_gelu(c, c, 3), nn.Conv2d(c, 4 * g, 1))
        nn.init.constant_(self.point_head[-1].bias, PRIOR_BIAS)
        nn.init.constant_(self.box_head[-1].bias, math.log1p(BOX_PRIOR_PX / card.out_stride))

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expected = (self.card.embed_dim, EMBED_CELLS, EMBED_CELLS)
        if embeddings.ndim != 4 or embeddings.shape[1:] != expected:
            shape = ",".join(map(str, expected))
            raise ValueError(f"AutoPPN expects embeddings [B,{shape}], got {tuple(embeddings.shape)}")
        x = self.blocks(self.stem(embeddings))  # [B,C,64,64]
        if self.card.out_stride == 8:
            x = self.refine(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))  # [B,C,128,128]
        heat = torch.sigmoid(self.point_head(x))  # [B,G,H,W]
        b, _, h, w = heat.shape
        t = self.box_head(x).reshape(b, self.card.groups, 4, h, w)  # [B,G,4,H,W]
        return heat, t
