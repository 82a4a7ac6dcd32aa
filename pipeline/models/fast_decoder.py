"""SAM's mask decoder rewritten for many prompts per image: the same function, a fraction of the work.

``FastMaskDecoder`` computes what :func:`pipeline.models.sam.decode_masks` computes for prompts without a mask
input (dense embedding = ``no_mask_embed``), equal up to float rounding (~1e-6 relative in fp32). The savings are
exact algebra, not approximations:

1. Per image, not per prompt: in the first two-way block the image side (embedding + ``no_mask_embed``, and the
   positional encoding) is the same for every prompt, so its key/value projections (token→image) and its query
   projection (image→token) are computed once per image.
2. Projections of the 4096 image tokens are folded into the few prompt tokens. Token→image attention scores
   ``(q Wk)·(x + pe)`` drop the key bias (constant along the softmax axis) and its values ``A (x Wv + bv)`` become
   ``(A x) Wv + bv`` (softmax rows sum to 1); image→token scores become ``x (Wq^T k)`` and the output projection
   is applied to the 7 token values before the attention sum. Each of these costs 4096×256×56 multiply-adds per
   prompt instead of 4096×256×128 (or twice that).
3. The image tokens stay token-major ([P,4096,256] = channels-last), so the 2×2 stride-2 transposed convolutions of
   ``output_upscaling`` are plain matmuls and SAM's LayerNorm2d is a last-axis layer norm, with no layout copies.
4. Optional skips (:class:`DecodeHints`): the upscaling (the largest cost) runs only for prompts whose wanted
   tokens can pass an IoU threshold, and only over the low-res rows/columns the caller reads (it is local: each
   embedding pixel makes one 4×4 block of logits).
5. Groups of prompts: inside one image (the default; the image's keys are shared by one matmul, which suits a CPU's
   caches) or across images (``across_images=True``, for GPUs, where each group costs ~250 operator calls, most of
   them kernel launches: 32 images × 10 boxes decode in 5 groups of 64 instead of 64 groups of 8 or 2; the image
   side is gathered per prompt).
6. Optional low precision by side (``dtype=torch.bfloat16``): the per-prompt image tokens [P,4096,256], their
   attention scores, their LayerNorms and the upscaling are bf16; the few prompt tokens and the heads stay fp32.
   (Under autocast the same work was mostly casts: each [P,4096,256] tensor went to bf16 before a matmul and back
   to fp32 after a LayerNorm.)

Shapes: embeddings [N,256,64,64]; prompts are sparse token embeddings [P,T,256] with an image index [P]; results
are low-res logits [P,4,256,256] and IoU [P,4] for all four mask tokens (skipped parts are zeros).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

LOW_RES = 256
UPSCALE = 4  # low-res logits per embedding pixel, per axis


@dataclass(frozen=True)
class DecodeHints:
    """Work a caller does not need. A backend may skip it (returning zeros there) or ignore the hints.

    Attributes:
        mask_tokens: the mask tokens whose logits are read (IoU is always returned for all four).
        min_iou: prompts whose best IoU over ``mask_tokens`` is not above this have no logits read.
        low_res_hw: [P,2] int, rows and columns of the low-res logits read per prompt (a top-left window).
        dense: the prompts cover each image densely (grids, proposals): a CPU backend may do per-image work once
            to make each prompt cheaper. Set by the prompt source, never by the call's size, so that how prompts
            are split into calls does not change which decoder computes them.
    """

    mask_tokens: tuple[int, ...] = (0, 1, 2, 3)
    min_iou: float | None = None
    low_res_hw: np.ndarray | None = None
    dense: bool = False

    def take(self, index: slice | np.ndarray) -> DecodeHints:
        hw = None if self.low_res_hw is None else self.low_res_hw[index]
        return DecodeHints(self.mask_tokens, self.min_iou, hw, self.dense)


@dataclass(frozen=True)
class _Proj:
    """One Attention module's weights split per head: w_* [H,dh,256], b_* [H,dh]; out_t [H,dh,256] = Wo^T."""

    heads: int
    scale: float
    w_q: torch.Tensor
    b_q: torch.Tensor
    w_k: torch.Tensor
    b_k: torch.Tensor
    w_v: torch.Tensor
    b_v: torch.Tensor
    out_t: torch.Tensor
    b_out: torch.Tensor
    module: Attention

    @staticmethod
    def of(attn: Attention) -> _Proj:
        h, di = attn.num_heads, attn.internal_dim
        dh = di // h

        def split(linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
            return linear.weight.detach().view(h, dh, -1), linear.bias.detach().view(h, dh)

        (w_q, b_q), (w_k, b_k), (w_v, b_v) = split(attn.q_proj), split(attn.k_proj), split(attn.v_proj)
        out_t = attn.out_proj.weight.detach().t().reshape(h, dh, -1).contiguous()
        return _Proj(h, 1 / math.sqrt(dh), w_q, b_q, w_k, b_k, w_v, b_v, out_t, attn.out_proj.bias.detach(), attn)

    def token_values(self, v_tokens: torch.Tensor) -> torch.Tensor:
        """Token values [P,T,256] → ``v_proj`` then ``out_proj`` per head, [P,H·T,256] (rows ordered head, token).

        Each head's attention weights sum to 1 over the tokens, so adding ``b_out / H`` to every row adds exactly
        ``b_out`` to the attention output: the bias costs no pass over the 4096 image tokens.
        """
        v = self.module.v_proj(v_tokens).unflatten(-1, (self.heads, -1))  # [P,T,H,dh]
        return torch.einsum("pthd,hdc->phtc", v, self.out_t).flatten(1, 2) + self.b_out / self.heads


@dataclass(frozen=True)
class ImageContext:
    """What the first block needs of B images, shared by all their prompts (token-major, in the decoder's image-side
    dtype)."""

    src: torch.Tensor
    """Embedding + ``no_mask_embed`` [B,4096,256] (the first block's residual)."""
    keys: torch.Tensor
    """Token→image keys [B,H,4096,dh] of (embedding + no_mask + pe)."""
    values: torch.Tensor
    """Token→image values [B,H,4096,dh] of (embedding + no_mask)."""
    queries: torch.Tensor
    """Image→token queries [B,H,4096,dh] of (embedding + no_mask + pe), already scaled by 1/sqrt(dh)."""

    def image(self, index: int) -> ImageContext:
        """Image ``index`` alone, B = 1 (views, no copy)."""
        return type(self)(*(part[index : index + 1] for part in self._parts()))

    def gather(self, index: torch.Tensor) -> ImageContext:
        """One context per prompt, B = len(index) (copies)."""
        return type(self)(*(part[index] for part in self._parts()))

    def _parts(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))


class FastMaskDecoder:
    """SAM's ``MaskDecoder`` for P prompts of N images without mask inputs (see the module docstring).

    Args:
        mask_decoder: the model's decoder (weights are read, not copied; it must not be trained meanwhile).
        image_pe: [1,256,64,64] dense positional encoding. no_mask_embed: [256].
        group: prompts processed together; bounds the [group,4096,256] working set.
        dtype: the image side's dtype, float32 or bfloat16 (see the module docstring).
        across_images: groups may span images (fewer, larger groups: for GPUs); otherwise each group is of one image.
    """

    def __init__(
        self,
        mask_decoder: MaskDecoder,
        image_pe: torch.Tensor,
        no_mask_embed: torch.Tensor,
        group: int = 8,
        dtype: torch.dtype = torch.float32,
        across_images: bool = False,
    ) -> None:
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        self.dtype = dtype
        self.decoder = mask_decoder
        self.group = group
        self.across_images = across_images
        blocks: list[TwoWayAttentionBlock] = list(mask_decoder.transformer.layers)
        if len(blocks) != 2 or not blocks[0].skip_first_layer_pe or blocks[1].skip_first_layer_pe:
            raise ValueError("FastMaskDecoder expects SAM's two-block TwoWayTransformer")
        self.blocks = blocks
        # The image tokens' LayerNorms (norm4), in the image side's dtype.
        self.image_norms = [b.norm4 if dtype == torch.float32 else copy.deepcopy(b.norm4).to(dtype) for b in blocks]
        self.pe = image_pe.detach().flatten(2)[0].t().contiguous()  # [4096,256]
        self.image_pe = self.pe.to(dtype)
        self.no_mask = no_mask_embed.detach().reshape(-1)
        self.t2i = [_Proj.of(b.cross_attn_token_to_image) for b in blocks]
        self.i2t = [_Proj.of(b.cross_attn_image_to_token) for b in blocks]
        self.final = _Proj.of(mask_decoder.transformer.final_attn_token_to_image)
        conv1, norm, _, conv2, _ = mask_decoder.output_upscaling
        # ConvTranspose2d(k=2, s=2) weight [in,out,2,2] → [in, (i,j,out)]: one matmul per embedding pixel.
        self.up1_w = conv1.weight.detach().permute(0, 2, 3, 1).flatten(1).contiguous().to(dtype)
        self.up1_b = conv1.bias.detach().repeat(4).to(dtype)
        self.up_norm = norm if dtype == torch.float32 else copy.deepcopy(norm).to(dtype)
        self.up2_w = conv2.weight.detach().permute(0, 2, 3, 1).flatten(1).contiguous().to(dtype)
        self.up2_b = conv2.bias.detach().repeat(4).to(dtype)
        self.output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight]).detach()

    def image_context(self, embeddings: torch.Tensor) -> ImageContext:
        """[B,256,64,64] embeddings → their :class:`ImageContext` (computed in fp32, stored in ``dtype``)."""
        src = embeddings.float().flatten(2).transpose(1, 2) + self.no_mask  # [B,4096,256]
        with_pe = src + self.pe
        t2i, i2t = self.t2i[0], self.i2t[0]
        keys = t2i.module.k_proj(with_pe).unflatten(-1, (t2i.heads, -1)).transpose(1, 2)
        values = t2i.module.v_proj(src).unflatten(-1, (t2i.heads, -1)).transpose(1, 2)
        queries = (i2t.module.q_proj(with_pe) * i2t.scale).unflatten(-1, (i2t.heads, -1)).transpose(1, 2)
        parts = (src, keys, values, queries)
        return ImageContext(*(part.to(self.dtype).contiguous() for part in parts))

    def __call__(
        self,
        context: ImageContext,
        image_index: np.ndarray,
        sparse: torch.Tensor,
        hints: DecodeHints | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decodes P prompts of the images of ``context`` (``image_index`` [P] indexes its B images).

        ``sparse`` [P,T,256] are the prompt tokens (:func:`pipeline.models.sam.embed_prompt_tokens`). Returns float32
        low-res logits [P,4,256,256] and IoU [P,4].
        """
        hints = hints or DecodeHints()
        p = len(image_index)
        logits = sparse.new_zeros((p, 4, LOW_RES, LOW_RES), dtype=torch.float32)
        iou = sparse.new_zeros((p, 4), dtype=torch.float32)
        for rows, image in self._groups(np.asarray(image_index)):
            # On CPU every group has exactly ``group`` prompts (the last one repeated): matrix kernels round
            # differently for other row counts, and fixed shapes make each prompt's result independent of how
            # prompts were split into calls, chunks and groups (its place inside a group does not change it).
            # GPUs promise no bit-identity across shapes anyway, so they are not padded.
            real = len(rows)
            if sparse.device.type == "cpu":
                rows = np.concatenate([rows, np.repeat(rows[-1:], self.group - real)])
            index = torch.as_tensor(rows, device=sparse.device)
            if image is None:
                ctx = context.gather(torch.as_tensor(image_index[rows], device=sparse.device))
            else:
                ctx = context.image(image)
            iou[index] = self._decode_group(ctx, sparse[index], hints, logits, rows, real).to(iou.dtype)
        return logits, iou

    def _groups(self, image_index: np.ndarray) -> list[tuple[np.ndarray, int | None]]:
        """Prompt rows of each group and its one image (None when the group spans images)."""
        if not self.across_images:
            return [
                (rows[start : start + self.group], int(image))
                for image in np.unique(image_index)
                for rows in [np.flatnonzero(image_index == image)]
                for start in range(0, len(rows), self.group)
            ]
        order = np.argsort(image_index, kind="stable")
        groups = []
        for start in range(0, len(order), self.group):
            rows = order[start : start + self.group]
            images = np.unique(image_index[rows])
            groups.append((rows, int(images[0]) if len(images) == 1 else None))
        return groups

    def _decode_group(
        self,
        ctx: ImageContext,
        sparse: torch.Tensor,
        hints: DecodeHints,
        logits: torch.Tensor,
        rows: np.ndarray,
        real: int,
    ) -> torch.Tensor:
        """Decodes prompts ``rows`` into ``logits[rows]`` (left zero where skipped); returns IoU [p,4].

        ``ctx`` is their one image's (B = 1) or one per prompt (B = p). Rows from ``real`` on repeat the last real
        one (padding): their masks are not upscaled."""
        p = len(sparse)
        pe_tokens = torch.cat([self.output_tokens.unsqueeze(0).expand(p, -1, -1), sparse], dim=1)  # [p,T,256]
        # Only the IoU token and the wanted mask tokens are read after the final attention, where tokens are
        # independent (no self-attention follows), so only they attend.
        needed = [0, *(1 + token for token in hints.mask_tokens)]
        queries, first_conv = self._transformer(ctx, pe_tokens, needed)  # queries [p,len(needed),256]
        iou = self.decoder.iou_prediction_head(queries[:, 0])  # [p,4]
        wanted = np.arange(p) < real
        if hints.min_iou is not None:
            wanted &= (iou[:, list(hints.mask_tokens)].amax(dim=1) > hints.min_iou).cpu().numpy()
        if not wanted.any():
            return iou
        keep = torch.as_tensor(np.flatnonzero(wanted), device=iou.device)
        hw = (LOW_RES, LOW_RES) if hints.low_res_hw is None else np.max(hints.low_res_hw[rows[wanted]], axis=0)
        gy, gx = (min(64, math.ceil(int(v) / UPSCALE)) for v in hw)
        mlps = self.decoder.output_hypernetworks_mlps
        # On all p rows, then the kept ones: matmuls of a few rows round differently for other row counts.
        hyper = torch.stack([mlps[token](queries[:, 1 + i]) for i, token in enumerate(hints.mask_tokens)], dim=1)
        hyper = hyper[keep]  # [r,m,32]
        masks = self._upscale(first_conv(keep, gy, gx), hyper.to(self.dtype), gy, gx)  # [r,m,gy,2,2,gx,2,2]
        # Low-res Y = 4y + 2i + i2 (and X alike): a view of the output window takes the blocks in one write.
        window = logits[:, :, : gy * UPSCALE, : gx * UPSCALE].unflatten(2, (gy, 2, 2)).unflatten(5, (gx, 2, 2))
        out_rows = torch.as_tensor(rows[wanted], device=logits.device)
        tokens = torch.as_tensor(hints.mask_tokens, device=logits.device)
        window[out_rows[:, None], tokens[None, :]] = masks.float()
        return iou

    def _transformer(
        self, ctx: ImageContext, pe_tokens: torch.Tensor, needed: list[int]
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor, int, int], torch.Tensor]]:
        """The two-way transformer: output tokens ``needed`` [p,len(needed),256] (after the final norm) and a
        function (prompt rows [r], gy, gx) → ``output_upscaling``'s first transposed convolution of their final image
        tokens over the top-left gy×gx embedding pixels, [r·gy·gx, (i,j,64)] in the image side's dtype."""
        queries, attn = self._first_block_tokens(ctx, pe_tokens)
        values = self.i2t[0].token_values(queries).to(self.dtype)
        x1 = torch.baddbmm(ctx.src.expand(len(attn), -1, -1), attn.transpose(1, 2), values)
        x1 = self.image_norms[0](x1)  # [p,4096,256]
        queries, x2 = self._second_block(queries, x1, pe_tokens)
        q = (queries + pe_tokens)[:, needed]
        attended = self._token_to_image(self.final, q, x2, x2 + self.image_pe)
        queries = self.decoder.transformer.norm_final_attn(queries[:, needed] + attended)
        return queries, lambda keep, gy, gx: self._first_conv(x2[keep], gy, gx)

    def _first_block_tokens(self, ctx: ImageContext, pe_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block 1 (no PE on its self-attention input, no residual there) up to its image→token attention: the
        output tokens [p,T,256] and the image→token attention weights [p,H·T,4096] (softmax over each head's T
        tokens, in the image side's dtype). The image side comes from ``ctx``.

        The p prompts are laid out as [B, p/B·T] per head against ``ctx``'s B images (B = 1: one matmul for all)."""
        block, t2i, i2t = self.blocks[0], self.t2i[0], self.i2t[0]
        queries = block.norm1(block.self_attn(q=pe_tokens, k=pe_tokens, v=pe_tokens))
        p, t, _ = queries.shape
        b = len(ctx.src)

        def per_image(tokens: torch.Tensor) -> torch.Tensor:  # [p,T,H,dh] → [B,H,p/B·T,dh]
            return tokens.unflatten(0, (b, -1)).permute(0, 3, 1, 2, 4).flatten(2, 3)

        q = per_image(t2i.module.q_proj(queries + pe_tokens).unflatten(-1, (t2i.heads, -1)))
        attended = F.scaled_dot_product_attention(q.to(self.dtype), ctx.keys, ctx.values).float()  # [B,H,p/B·T,dh]
        attended = attended.unflatten(2, (-1, t)).permute(0, 2, 3, 1, 4).flatten(3).flatten(0, 1)  # [p,T,H·dh]
        queries = block.norm2(queries + t2i.module.out_proj(attended))
        queries = block.norm3(queries + block.mlp(queries))
        keys = per_image(i2t.module.k_proj(queries + pe_tokens).unflatten(-1, (i2t.heads, -1))).to(self.dtype)
        scores = torch.matmul(keys, ctx.queries.transpose(-1, -2))  # [B,H,p/B·T,4096]
        scores = scores.unflatten(2, (-1, t)).transpose(1, 2)  # [B,p/B,H,T,4096]
        # The softmax runs over the T tokens; keeping the 4096 pixels last makes it vectorise along them.
        return queries, torch.softmax(scores, dim=3).reshape(p, -1, scores.shape[-1])  # [p,H·T,4096]

    def _second_block(
        self, queries: torch.Tensor, x1: torch.Tensor, pe_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        block, i2t = self.blocks[1], self.i2t[1]
        q = queries + pe_tokens
        queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
        y1 = x1 + self.image_pe  # [p,4096,256], keys and image→token queries of this block
        queries = block.norm2(queries + self._token_to_image(self.t2i[1], queries + pe_tokens, x1, y1))
        queries = block.norm3(queries + block.mlp(queries))
        # Image→token: scores (x+pe)(Wq^T k) + bq·k; the output projection is folded into the token values.
        keys = i2t.module.k_proj(queries + pe_tokens).unflatten(-1, (i2t.heads, -1))  # [p,T,H,dh]
        fold = torch.einsum("pthd,hdc->phtc", keys, i2t.w_q).flatten(1, 2) * i2t.scale  # [p,H·T,256]
        bias = torch.einsum("pthd,hd->pht", keys, i2t.b_q).flatten(1).unsqueeze(2) * i2t.scale  # [p,H·T,1]
        scores = torch.baddbmm(bias.to(self.dtype), fold.to(self.dtype), y1.transpose(1, 2))  # [p,H·T,4096]
        attn = torch.softmax(scores.unflatten(1, (i2t.heads, -1)), dim=2).flatten(1, 2)
        # In place: x1 is not read again (saves a [p,4096,256] copy).
        x2 = x1.baddbmm_(attn.transpose(1, 2), i2t.token_values(queries).to(self.dtype))
        return queries, self.image_norms[1](x2)

    @staticmethod
    def _token_to_image(proj: _Proj, q_tokens: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Attention(q=tokens, k=y, v=x), x [p,4096,256] per prompt and y = x + pe, without projecting x or y; x and
        y are in the image side's dtype, the result [p,T,256] in the tokens'."""
        q = proj.module.q_proj(q_tokens).unflatten(-1, (proj.heads, -1)) * proj.scale  # [p,T,H,dh]
        # q·(Wk y + bk) = (Wk^T q)·y + q·bk; the second term is constant along the softmax axis.
        folded = torch.einsum("pthd,hdc->phtc", q, proj.w_k).flatten(1, 2)  # [p,H·T,256]
        scores = torch.bmm(folded.to(y.dtype), y.transpose(1, 2))  # [p,H·T,4096]
        mixed = torch.bmm(torch.softmax(scores, dim=-1), x).to(q.dtype).unflatten(1, (proj.heads, -1))  # [p,H,T,256]
        values = torch.einsum("phtc,hdc->pthd", mixed, proj.w_v) + proj.b_v  # [p,T,H,dh]
        return proj.module.out_proj(values.flatten(2))

    def _first_conv(self, x2: torch.Tensor, gy: int, gx: int) -> torch.Tensor:
        """Image tokens [r,4096,256] → the first transposed convolution over the top-left gy×gx embedding pixels,
        [r·gy·gx, (i,j,64)]."""
        pixels = x2.view(len(x2), 64, 64, -1)[:, :gy, :gx]  # [r,gy,gx,256]
        return torch.addmm(self.up1_b, pixels.reshape(-1, pixels.shape[-1]), self.up1_w)

    def _upscale(self, up: torch.Tensor, hyper: torch.Tensor, gy: int, gx: int) -> torch.Tensor:
        """The first transposed convolution's output [r·gy·gx, (i,j,64)] and hypernetwork weights [r,m,32] → logits
        of the top-left gy×gx embedding pixels as 4×4 blocks, [r,m,gy,2,2,gx,2,2] (low-res row 4y + 2i + i2, column
        4x + 2j + j2)."""
        r = len(hyper)
        norm = self.up_norm
        up = F.layer_norm(up.view(-1, norm.weight.shape[0]), norm.weight.shape, norm.weight, norm.bias, norm.eps)
        up = F.gelu(torch.addmm(self.up2_b, F.gelu(up).view(-1, self.up2_w.shape[0]), self.up2_w))
        masks = torch.bmm(up.view(r, -1, hyper.shape[-1]), hyper.transpose(1, 2))  # [r, gy·gx·16, 4]
        return masks.view(r, gy, gx, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
