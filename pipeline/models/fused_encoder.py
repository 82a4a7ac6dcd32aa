"""The EfficientViT-SAM image encoder in inference form: BatchNorm folded into convolutions, activations fused.

:func:`fuse_for_inference` returns a copy of an image encoder in which every :class:`ConvLayer` is one
:class:`FusedConvLayer`: the eval-mode BatchNorm becomes the convolution's weight scale and bias (computed in
float64), so conv → BN → activation is one convolution with a bias and an activation. On a CPU with oneDNN the
three run as one oneDNN primitive, the activation applied as a post-op while the output is still in registers: the
separate tanh-GELU pass over each activation map was 13% of L0's fp32 encoder time and 22% of its bf16 time on
2 cores, the BatchNorm pass another 2%. On other devices it is ``F.conv2d`` with the folded bias, then the
activation (one kernel less per layer).

The same function up to float rounding (fp32: ~1e-6 relative on the embedding, inside the fixtures' 1e-5). The
copy shares every parameter that is not folded with the original, whose modules, state_dict keys and training
are left as they are; fold again after the weights change.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.efficientvit import ConvLayer

ONEDNN_ACTIVATIONS = {None: ("none", None), "gelu": ("gelu", "tanh"), "relu": ("relu", None)}


def onednn_fusion_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused convolution (the op ``torch.compile`` uses for CPU fusions)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return torch.ops.mkldnn._convolution_pointwise.default is not None
    except (AttributeError, RuntimeError):
        return False


def activation_name(act: nn.Module | None) -> str | None:
    """The activation of a :class:`ConvLayer` as a name (None, "gelu" for tanh-GELU, "relu")."""
    if act is None:
        return None
    if isinstance(act, nn.GELU) and act.approximate == "tanh":
        return "gelu"
    if isinstance(act, nn.ReLU):
        return "relu"
    raise ValueError(f"cannot fuse activation {act!r}")


def folded_weight_and_bias(layer: ConvLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's weight and bias with the layer's eval-mode BatchNorm folded in (float64 arithmetic)."""
    weight = layer.conv.weight.detach().double()
    out_channels = weight.shape[0]
    bias = torch.zeros(out_channels, dtype=torch.float64, device=weight.device)
    if layer.conv.bias is not None:
        bias = layer.conv.bias.detach().double()
    norm = layer.norm
    if norm is not None:
        if not isinstance(norm, nn.BatchNorm2d) or norm.running_mean is None:
            raise ValueError(f"cannot fold {norm!r}: only BatchNorm2d with running statistics")
        scale = norm.running_var.double().add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight.detach().double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.detach().double()
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = bias * scale + shift
    dtype = layer.conv.weight.dtype
    return weight.to(dtype), bias.to(dtype)


class FusedConvLayer(nn.Module):
    """A :class:`ConvLayer` as one convolution with a bias and an optional activation.

    ``onednn``: on CPU tensors, run as oneDNN's fused convolution. Under CPU autocast the input and a cached copy of
    the weight take the autocast dtype, as ``F.conv2d`` would (the copy is made once, not per call); the bias stays
    fp32.
    """

    def __init__(self, layer: ConvLayer, onednn: bool) -> None:
        super().__init__()
        weight, bias = folded_weight_and_bias(layer)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride = list(layer.conv.stride)
        self.padding = list(layer.conv.padding)
        self.dilation = list(layer.conv.dilation)
        self.groups = layer.conv.groups
        self.activation = activation_name(layer.act)
        self.onednn = onednn
        self._cast: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn and x.device.type == "cpu":
            return self._onednn(x)
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.activation == "gelu":
            return F.gelu(x, approximate="tanh")
        if self.activation == "relu":
            return F.relu(x)
        return x

    def _onednn(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x = x.to(dtype)
            weight = self._weight_as(dtype)
        attr, algorithm = ONEDNN_ACTIVATIONS[self.activation]
        # The bias stays fp32 (oneDNN adds it to the fp32 accumulator). With a bf16 bias, L0's embedding RMS error
        # against fp32 was 0.60% instead of 0.53%, and its bf16 gate 0.979 instead of 0.992 (one mask flipped).
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, self.bias, self.padding, self.stride, self.dilation, self.groups, attr, [], algorithm
        )

    def _weight_as(self, dtype: torch.dtype) -> torch.Tensor:
        # Cached against the buffer it was made from, so a later .to() (device, memory format) is picked up.
        if self._cast is None or self._cast[0] is not self.weight or self._cast[1].dtype != dtype:
            self._cast = (self.weight, self.weight.to(dtype))
        return self._cast[1]


def fuse_for_inference(encoder: nn.Module, onednn: bool | None = None) -> nn.Module:
    """A copy of ``encoder`` (eval mode) with every :class:`ConvLayer` replaced by a :class:`FusedConvLayer`.

    ``onednn``: use oneDNN's fused convolution for CPU tensors; None = when this build has it. Parameters and
    buffers that are not folded are shared with ``encoder``, not copied.
    """
    if onednn is None:
        onednn = onednn_fusion_available()
    shared = {id(t): t for t in (*encoder.parameters(), *encoder.buffers())}
    fused = copy.deepcopy(encoder, memo=shared).eval()
    for parent in list(fused.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ConvLayer):
                setattr(parent, name, FusedConvLayer(child, onednn))
    return fused
