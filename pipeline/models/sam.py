"""EfficientViT-SAM: EfficientViT image encoder (backbone + SamNeck + LayerNorm2d) with SAM's prompt encoder and
mask decoder (Meta's ``segment_anything.modeling`` classes, used unchanged).

The image embedding is [B,C,64,64] with C = 256 for every official variant (a registered demo model may use a
narrower C; ``EfficientViTSam.embed_dim`` says which). The encoder input is S×S (512 for L models, 1024 for XL),
while prompts, the mask frame and the prompt encoder's normalisation always use the 1024 frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from pipeline.models.efficientvit import (
    NORM_EPS,
    ConvLayer,
    EfficientViTLargeBackbone,
    FusedMBConv,
    IdentityLayer,
    LayerNorm2d,
    MBConv,
    OpSequential,
    ResidualBlock,
    UpSampleLayer,
)

EMBED_DIM = 256
EMBED_HW = (64, 64)
PROMPT_FRAME = 1024


class SamNeck(nn.Module):
    """Fuses three backbone stages: 1×1 conv + BN per stage, upsample to 64×64, sum, FusedMBConv blocks, 1×1 conv."""

    def __init__(
        self,
        *,
        fid_list: Sequence[str],
        in_channel_list: Sequence[int],
        head_width: int,
        head_depth: int,
        expand_ratio: float,
        middle_op: str = "fmb",
        out_dim: int = EMBED_DIM,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        self.input_keys = list(fid_list)
        self.out_dim = out_dim
        self.input_ops = nn.ModuleList(
            OpSequential([ConvLayer(c, head_width, 1, norm="bn2d", act=None), UpSampleLayer(size=EMBED_HW)])
            for c in in_channel_list
        )
        if middle_op == "fmb":
            blocks = [
                FusedMBConv(head_width, head_width, 1, expand_ratio, use_bias=False, norm="bn2d", act=(act, None))
                for _ in range(head_depth)
            ]
        elif middle_op == "mb":
            blocks = [
                MBConv(head_width, head_width, 1, expand_ratio, use_bias=False, norm="bn2d", act=(act, act, None))
                for _ in range(head_depth)
            ]
        else:
            raise ValueError(f"unknown middle_op {middle_op!r}")
        self.middle = OpSequential([ResidualBlock(b, IdentityLayer()) for b in blocks])
        self.output_ops = nn.ModuleList(
            [OpSequential([ConvLayer(head_width, out_dim, 1, use_bias=True, norm=None, act=None)])]
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        branches = [op(features[key]) for key, op in zip(self.input_keys, self.input_ops, strict=True)]
        # Summed right to left (a + (b + c)), the official order, so fp32 sums round identically.
        fused = branches[-1]
        for branch in reversed(branches[:-1]):
            fused = branch + fused
        return self.output_ops[0](self.middle(fused))


class EfficientViTSamImageEncoder(nn.Module):
    def __init__(self, backbone: EfficientViTLargeBackbone, neck: SamNeck) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.norm = LayerNorm2d(neck.out_dim, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] normalised, padded image → [B,C,64,64] embedding (C = 256 for the official variants)."""
        return self.norm(self.neck(self.backbone(x)))


class EfficientViTSam(nn.Module):
    """Container with the official top-level names ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.

    ``encoder_input_size`` is the side S of the square encoder input (512 or 1024).
    """

    def __init__(
        self,
        image_encoder: EfficientViTSamImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        encoder_input_size: int,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.encoder_input_size = encoder_input_size

    @property
    def embed_dim(self) -> int:
        """Channels C of the image embedding [B,C,64,64] (256 for every official variant)."""
        return self.prompt_encoder.embed_dim


def build_sam_heads(
    *,
    embed_dim: int = EMBED_DIM,
    num_heads: int = 8,
    mlp_dim: int = 2048,
    iou_head_hidden_dim: int = 256,
    attention_downsample_rate: int = 2,
) -> tuple[PromptEncoder, MaskDecoder]:
    """SAM's prompt encoder and mask decoder as EfficientViT-SAM builds them, with eps 1e-6 on every LayerNorm.

    The defaults are the official (SAM-ViT-H) sizes; ``embed_dim`` must be divisible by 8 (the output upscaling
    ends at C/8 channels) and ``embed_dim / attention_downsample_rate`` (the cross-attention width) by
    ``num_heads``.
    """
    if embed_dim % 8 or embed_dim % (attention_downsample_rate * num_heads):
        raise ValueError(
            f"embed_dim {embed_dim} must be divisible by 8 and by attention_downsample_rate*num_heads "
            f"({attention_downsample_rate * num_heads})"
        )
    prompt_encoder = PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=EMBED_HW,
        input_image_size=(PROMPT_FRAME, PROMPT_FRAME),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=2,
            embedding_dim=embed_dim,
            mlp_dim=mlp_dim,
            num_heads=num_heads,
            attention_downsample_rate=attention_downsample_rate,
        ),
        transformer_dim=embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_head_hidden_dim,
    )
    for module in mask_decoder.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = NORM_EPS
    return prompt_encoder, mask_decoder


def build_efficientvit_sam(
    *,
    backbone: EfficientViTLargeBackbone,
    neck: SamNeck,
    encoder_input_size: int,
    mlp_dim: int = 2048,
    iou_head_hidden_dim: int = 256,
    num_heads: int = 8,
    attention_downsample_rate: int = 2,
) -> EfficientViTSam:
    """The full model; the embedding width is the neck's ``out_dim`` (256 unless a demo model narrows it)."""
    prompt_encoder, mask_decoder = build_sam_heads(
        embed_dim=neck.out_dim,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        iou_head_hidden_dim=iou_head_hidden_dim,
        attention_downsample_rate=attention_downsample_rate,
    )
    model = EfficientViTSam(
        EfficientViTSamImageEncoder(backbone, neck), prompt_encoder, mask_decoder, encoder_input_size
    )
    return model.eval()


def embed_prompt_tokens(prompt_encoder: PromptEncoder, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[P,T,2] coords (1024 frame) and [P,T] labels → sparse embeddings [P,T,C].

    Equal to ``PromptEncoder`` on points + box corners, written with masks instead of indexing so that the same
    function exports to ONNX: label -1 takes ``not_a_point_embed`` in place of the position encoding.
    """
    pe = prompt_encoder.pe_layer.forward_with_coords(coords + 0.5, prompt_encoder.input_image_size)  # [P,T,C]
    labels = labels.unsqueeze(-1)
    is_pad = (labels == -1).to(pe.dtype)
    out = pe * (1 - is_pad) + prompt_encoder.not_a_point_embed.weight * is_pad
    for k, embedding in enumerate(prompt_encoder.point_embeddings):
        out = out + embedding.weight * (labels == k).to(pe.dtype)
    return out


def embed_dense(prompt_encoder: PromptEncoder, mask_input: torch.Tensor | None, num_prompts: int) -> torch.Tensor:
    """[P,1,256,256] mask logits (or None) → dense embeddings [P,C,64,64]."""
    if mask_input is not None:
        return prompt_encoder.mask_downscaling(mask_input)
    return prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(num_prompts, -1, *EMBED_HW)


def decode_masks(
    mask_decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's ``MaskDecoder.predict_masks`` with one image embedding per prompt instead of one shared embedding.

    Args:
        image_embeddings: [P,C,64,64], already indexed per prompt. image_pe: [1,C,64,64].
        sparse: [P,T,C]. dense: [P,C,64,64].
    Returns:
        Low-res mask logits [P,4,256,256] and predicted IoU [P,4] for all four mask tokens.
    """
    p = sparse.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(p, -1, -1), sparse], dim=1)
    src = image_embeddings + dense
    b, c, h, w = src.shape
    hs, src = mask_decoder.transformer(src, image_pe.expand(p, -1, -1, -1), tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : 1 + mask_decoder.num_mask_tokens, :]
    upscaled = mask_decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # [P,32,256,256]
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(mask_decoder.output_hypernetworks_mlps)], dim=1
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    return masks, mask_decoder.iou_prediction_head(iou_token_out)
