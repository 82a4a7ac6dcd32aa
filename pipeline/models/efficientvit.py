"""EfficientViT building blocks and the large backbone used by EfficientViT-SAM.

Written from the architecture facts of mit-han-lab/efficientvit (commit de7d773, Apache-2.0); the module tree and
attribute names reproduce the official ``state_dict`` keys exactly (``stages.N.op_list.M.main.conv1.conv.weight``
...), so the official checkpoints load unchanged. Norm eps is 1e-6 everywhere (the official zoo calls
``set_norm_eps(model, 1e-6)`` before loading), and "gelu" means the tanh approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-6
BlockType = Literal["res", "fmb", "mb", "att", "att@3", "att@5"]


def make_norm(kind: str | None, channels: int) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "bn2d":
        return nn.BatchNorm2d(channels, eps=NORM_EPS)
    raise ValueError(f"unknown norm {kind!r}")


def make_act(kind: str | None) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "gelu":
        return nn.GELU(approximate="tanh")
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r}")


def _per_layer(value: object, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a [B,C,H,W] map; keys ``weight``/``bias`` like ``nn.LayerNorm``.

    Half-precision input is normalised in fp32 (and stays fp32): an fp16 variance overflows (efficientvit#142).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        out = x - torch.mean(x, dim=1, keepdim=True)
        out = out / torch.sqrt(torch.square(out).mean(dim=1, keepdim=True) + self.eps)
        return out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvLayer(nn.Module):
    """Conv2d ("same" padding) → optional norm → optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        use_bias: bool = False,
        norm: str | None = "bn2d",
        act: str | None = "gelu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=use_bias
        )
        self.norm = make_norm(norm, out_channels)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class IdentityLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class UpSampleLayer(nn.Module):
    """Resize to a fixed size (bicubic, ``align_corners=False``), always in fp32; a no-op at the target size."""

    def __init__(self, size: tuple[int, int], mode: str = "bicubic") -> None:
        super().__init__()
        self.size = size
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=False)


class OpSequential(nn.Module):
    """Runs ``op_list`` in order (the official container; keeps the ``op_list`` key prefix)."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class ResidualBlock(nn.Module):
    """``main(x) + shortcut(x)``; with no shortcut (stride-2 blocks) just ``main(x)``."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return self.main(x)
        return self.main(x) + self.shortcut(x)


class ResBlock(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, use_bias, norm, act
    ) -> None:
        super().__init__()
        use_bias, norm, act = _per_layer(use_bias, 2), _per_layer(norm, 2), _per_layer(act, 2)
        mid = round(in_channels * expand_ratio)
        self.conv1 = ConvLayer(in_channels, mid, 3, stride, use_bias=use_bias[0], norm=norm[0], act=act[0])
        self.conv2 = ConvLayer(mid, out_channels, 3, 1, use_bias=use_bias[1], norm=norm[1], act=act[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class FusedMBConv(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, use_bias, norm, act
    ) -> None:
        super().__init__()
        use_bias, norm, act = _per_layer(use_bias, 2), _per_layer(norm, 2), _per_layer(act, 2)
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvLayer(in_channels, mid, 3, stride, use_bias=use_bias[0], norm=norm[0], act=act[0])
        self.point_conv = ConvLayer(mid, out_channels, 1, use_bias=use_bias[1], norm=norm[1], act=act[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class MBConv(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, use_bias, norm, act
    ) -> None:
        super().__init__()
        use_bias, norm, act = _per_layer(use_bias, 3), _per_layer(norm, 3), _per_layer(act, 3)
        mid = round(in_channels * expand_ratio)
        self.inverted_conv = ConvLayer(in_channels, mid, 1, use_bias=use_bias[0], norm=norm[0], act=act[0])
        self.depth_conv = ConvLayer(mid, mid, 3, stride, groups=mid, use_bias=use_bias[1], norm=norm[1], act=act[1])
        self.point_conv = ConvLayer(mid, out_channels, 1, use_bias=use_bias[2], norm=norm[2], act=act[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention.

    qkv channels are grouped per head as ``[q(dim) k(dim) v(dim)]``; each scale adds a depthwise k×k + grouped 1×1
    aggregation of qkv, doubling the heads. The attention runs in fp32 with a row of ones appended to v to get
    the normaliser. (The official quadratic branch for H·W ≤ dim computes the same quantity.)
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, scales: Sequence[int], eps: float = 1e-15):
        super().__init__()
        heads = in_channels // dim
        total_dim = heads * dim
        self.dim = dim
        self.eps = eps
        self.qkv = ConvLayer(in_channels, 3 * total_dim, 1, use_bias=False, norm=None, act=None)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, k, padding=k // 2, groups=3 * total_dim, bias=False),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads, bias=False),
            )
            for k in scales
        )
        self.kernel_func = nn.ReLU()
        self.proj = ConvLayer(total_dim * (1 + len(scales)), out_channels, 1, use_bias=False, norm="bn2d", act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        out = self._linear_attention(qkv).to(qkv.dtype)
        return self.proj(out)

    def _linear_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        b, _, h, w = qkv.shape
        with torch.autocast(device_type=qkv.device.type, enabled=False):
            qkv = qkv.float().reshape(b, -1, 3 * self.dim, h * w)  # [B, heads, 3*dim, HW]
            q = self.kernel_func(qkv[:, :, : self.dim])
            k = self.kernel_func(qkv[:, :, self.dim : 2 * self.dim])
            v = F.pad(qkv[:, :, 2 * self.dim :], (0, 0, 0, 1), mode="constant", value=1.0)  # [B, heads, dim+1, HW]
            out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)  # [B, heads, dim+1, HW]
            out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
            return out.reshape(b, -1, h, w)


class EfficientViTBlock(nn.Module):
    """LiteMLA context module + MBConv local module, each residual."""

    def __init__(self, channels: int, dim: int, expand_ratio: float, scales: Sequence[int], act: str) -> None:
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(channels, channels, dim, scales), IdentityLayer())
        local = MBConv(
            channels,
            channels,
            1,
            expand_ratio,
            use_bias=(True, True, False),
            norm=(None, None, "bn2d"),
            act=(act, act, None),
        )
        self.local_module = ResidualBlock(local, IdentityLayer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


def build_local_block(
    block: str, in_channels: int, out_channels: int, stride: int, expand_ratio: float, act: str, fewer_norm: bool
) -> nn.Module:
    """A "res" / "fmb" / "mb" block; ``fewer_norm`` swaps BN for a bias on all but the last conv."""
    if block == "res":
        cls, n = ResBlock, 2
    elif block == "fmb":
        cls, n = FusedMBConv, 2
    elif block == "mb":
        cls, n = MBConv, 3
    else:
        raise ValueError(f"unknown local block {block!r}")
    if fewer_norm:
        use_bias = (True,) * (n - 1) + (False,)
        norm = (None,) * (n - 1) + ("bn2d",)
    else:
        use_bias, norm = False, "bn2d"
    acts = (act,) * (n - 1) + (None,)
    return cls(in_channels, out_channels, stride, expand_ratio, use_bias=use_bias, norm=norm, act=acts)


class EfficientViTLargeBackbone(nn.Module):
    """Stages of stride 2, 4, 8, ...; returns a dict ``{"input", "stage0", ..., "stage_final"}``."""

    def __init__(
        self,
        *,
        width_list: Sequence[int],
        depth_list: Sequence[int],
        block_list: Sequence[BlockType] = ("res", "fmb", "fmb", "mb", "att"),
        expand_list: Sequence[float] = (1, 4, 4, 4, 6),
        fewer_norm_list: Sequence[bool] = (False, False, False, True, True),
        qkv_dim: int = 32,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        n = len(width_list)
        if not len(depth_list) == len(block_list) == len(expand_list) == len(fewer_norm_list) == n:
            raise ValueError("width_list, depth_list, block_list, expand_list and fewer_norm_list differ in length")
        stage0: list[nn.Module] = [ConvLayer(3, width_list[0], 3, 2, norm="bn2d", act=act)]
        for _ in range(depth_list[0]):
            block = build_local_block(
                block_list[0], width_list[0], width_list[0], 1, expand_list[0], act, fewer_norm_list[0]
            )
            stage0.append(ResidualBlock(block, IdentityLayer()))
        stages = [OpSequential(stage0)]
        in_channels = width_list[0]
        for i in range(1, n):
            kind, width = block_list[i], width_list[i]
            # The stride-2 entry block has no shortcut, 4x the stage's expansion, and is an MBConv in attention stages.
            down_kind = kind if kind in ("mb", "fmb") else "mb"
            down = build_local_block(down_kind, in_channels, width, 2, expand_list[i] * 4, act, fewer_norm_list[i])
            ops: list[nn.Module] = [ResidualBlock(down, None)]
            in_channels = width
            for _ in range(depth_list[i]):
                if kind.startswith("att"):
                    scales = (3,) if kind == "att@3" else (5,)
                    ops.append(EfficientViTBlock(in_channels, qkv_dim, expand_list[i], scales, act))
                else:
                    block = build_local_block(
                        kind, in_channels, in_channels, 1, expand_list[i], act, fewer_norm_list[i]
                    )
                    ops.append(ResidualBlock(block, IdentityLayer()))
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)
        self.width_list = list(width_list)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {"input": x}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[f"stage{i}"] = x
        features["stage_final"] = x
        return features
