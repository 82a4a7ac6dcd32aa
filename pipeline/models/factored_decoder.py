"""SAM's mask decoder for many prompts per image with each prompt's image tokens kept factored: no [p,4096,256]
tensor is ever formed for a prompt.

After block 1 of the two-way transformer, a prompt's image tokens are its image's tokens, scaled per pixel by a
LayerNorm, plus a low-rank part made of the prompt's few token values:

    X = pixel ⊙ (S + Σ_j coef_jᵀ rows_j) + 1 βᵀ     pixel [p,N], S [N,C] per image, coef_j [p,k_j,N], rows_j [p,k_j,C]

Block 1's image→token attention adds Aᵀ V (A [p,H·T,N] attention weights, V [p,H·T,C] token values), and a
LayerNorm scales rows and subtracts row means, so X keeps this form (one term of rank H·T after block 1, two after
block 2; the rank-1 part that block 2's LayerNorm makes of β1 is folded into one head's rows). Everything the
decoder does with X is done on the factors:

- Attention scores against X + PE are ``pixel ⊙ (q·S Wkᵀ + Σ_j (q Wk rows_jᵀ) coef_j) + q·PE Wkᵀ``. Each token's
  query lives in one head's dh dimensions, so ``S Wkᵀ`` is projected once per image and costs a prompt N·dh per
  token; the low-rank part costs N·k per token instead of N·C.
- Attention values: ``w X Wvᵀ = (w ⊙ pixel)(S Wvᵀ) + Σ_j ((w ⊙ pixel) coef_jᵀ)(rows_j Wvᵀ) + Wv β``.
- LayerNorm statistics of ``X + Aᵀ V`` come from norms and inner products of the pieces. Every piece is centred
  first (S, the rows, V), so the variance is computed as a squared norm, not as E[x²] − mean² (which cancels badly
  in low precision). Inner products of the image part with token values reduce to per-image products with the
  output projections' per-head weights (dh per token again).
- For prompts whose masks are upscaled, ``output_upscaling``'s first transposed convolution is a matmul, so it is
  applied to the factors too (S W1 once per image); the nonlinear rest runs per prompt as in the fast decoder.

Per prompt this is ~2.5× fewer multiply-adds than :class:`~pipeline.models.fast_decoder.FastMaskDecoder` and none of
its memory-bound passes over [p,N,C] (two LayerNorms, residual and positional-encoding adds). Results equal SAM's
decoder up to float rounding (fp32). Groups are one image's prompts (the per-image projections are shared by one
matmul); the per-image work (~13 ms for L0 on 2 cores, bf16) pays off from a few dozen prompts per image, so the CPU
runtime uses this for grids and proposals and :class:`FastMaskDecoder` for box prompts and on GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from segment_anything.modeling import MaskDecoder

from pipeline.models.fast_decoder import FastMaskDecoder, ImageContext, _Proj


@dataclass(frozen=True)
class FactoredContext(ImageContext):
    """:class:`ImageContext` plus what the factored blocks need per image, leading dim B: the per-head products
    [B,H,N,dh] and S2 W1 in the decoder's image-side dtype, the [B,N] statistics in float32.

    Notation: ``src_c`` = embedding + no_mask, centred per pixel over channels; ``S1 = src_c ⊙ γ1``; ``S1c`` = S1
    centred; ``S2 = S1c ⊙ γ2`` (γ, β: the image-token LayerNorms of blocks 1 and 2).
    """

    src_sq: torch.Tensor
    """||src_c||² [B,N]."""
    src_out1: torch.Tensor
    """src_c Wo1ᵀ per head (Wo1: block 1's image→token output projection)."""
    src_bias1: torch.Tensor
    """src_c · bo1 [B,N]."""
    s1_keys: torch.Tensor
    """S1 Wkᵀ of block 2's token→image attention."""
    s1_values: torch.Tensor
    """S1 Wvᵀ of block 2's token→image attention."""
    s1_queries: torch.Tensor
    """S1 Wqᵀ of block 2's image→token attention."""
    s1c_sq: torch.Tensor
    """||S1c||² [B,N]."""
    s1c_gamma_out1: torch.Tensor
    """(γ1 ⊙ S1c) Wo1ᵀ per head."""
    s1c_gamma_bias1: torch.Tensor
    """(γ1 ⊙ S1c) · bo1 [B,N]."""
    s1c_gamma_sum: torch.Tensor
    """γ1 · S1c [B,N]."""
    s1c_out2: torch.Tensor
    """S1c Wo2ᵀ per head (Wo2: block 2's image→token output projection)."""
    s1c_bias2: torch.Tensor
    """S1c · bo2 [B,N]."""
    s1c_beta1: torch.Tensor
    """S1c · β1 [B,N]."""
    s2_up: torch.Tensor
    """S2 W1 [B,N,(i,j,64)]: ``output_upscaling``'s first transposed convolution (a matmul, no bias) of S2."""
    s2_keys: torch.Tensor
    """S2 Wkᵀ of the final token→image attention."""
    s2_values: torch.Tensor
    """S2 Wvᵀ of the final token→image attention."""


@dataclass(frozen=True)
class _Factors:
    """A prompt group's image tokens X [p,N,C] = pixel ⊙ (S + Σ_j coef_jᵀ rows_j) + bias, never formed (see the module
    docstring); S [N,C] is the image's."""

    pixel: torch.Tensor  # [p,N]
    coefs: tuple[torch.Tensor, ...]  # [p,k_j,N]
    rows: tuple[torch.Tensor, ...]  # [p,k_j,C]
    bias: torch.Tensor  # [C]

    def scores(self, fold: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """fold·(X_n - bias) [p,R,N] for fold [p,R,C], given ``shared`` = fold·S_n [p,R,N] (updated in place)."""
        for coef, rows in zip(self.coefs, self.rows, strict=True):
            shared.baddbmm_((fold @ rows.transpose(1, 2)).to(coef.dtype), coef)
        return shared.mul_(self.pixel.unsqueeze(1).to(shared.dtype))

    def linear(
        self, keep: torch.Tensor, gy: int, gx: int, s_w: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """X W + b of prompts ``keep`` [r] at the top-left gy×gx of the 64×64 pixels, [r·gy·gx, D], without forming
        X: pixel ⊙ (S W + Σ_j coef_jᵀ (rows_j W)) + (bias W + b). ``s_w`` is S W [N,D] (in the output dtype),
        ``weight`` W [C,D] and ``bias`` b [D] float32."""
        side = math.isqrt(self.pixel.shape[1])

        def window(per_pixel: torch.Tensor) -> torch.Tensor:  # [...,N] → [...,gy·gx]
            return per_pixel.unflatten(-1, (side, side))[..., :gy, :gx].flatten(-2)

        pixel = window(self.pixel[keep]).unsqueeze(1).to(s_w.dtype)  # [r,1,gy·gx]
        coef = torch.cat([window(c[keep]) for c in self.coefs], dim=1) * pixel  # [r,k,gy·gx]
        rows_w = torch.cat([rows[keep] for rows in self.rows], dim=1) @ weight  # [r,k,D]
        s_w = s_w.view(side, side, -1)[:gy, :gx].reshape(gy * gx, -1)  # [gy·gx,D], contiguous
        out = torch.addcmul((self.bias @ weight + bias).to(s_w.dtype), pixel.transpose(1, 2), s_w)  # [r,gy·gx,D]
        return out.baddbmm_(coef.transpose(1, 2), rows_w.to(s_w.dtype)).flatten(0, 1)


def _heads(tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """[p,T,H·dh] → [p,H,T,dh]."""
    return tokens.unflatten(-1, (heads, -1)).transpose(1, 2)


def _per_head(per_token: torch.Tensor, image_part: torch.Tensor) -> torch.Tensor:
    """[p,H,T,dh] per-token head vectors · [H,N,dh] per-image products → [p,H·T,N] (contiguous, a new tensor)."""
    return torch.einsum("phtd,hnd->phtn", per_token, image_part).reshape(len(per_token), -1, image_part.shape[1])


def _per_head_view(per_token: torch.Tensor, image_part: torch.Tensor) -> torch.Tensor:
    """As :func:`_per_head`, [p,H,T,N], possibly a strided view (to be read once)."""
    return torch.einsum("phtd,hnd->phtn", per_token, image_part)


def _centred(rows: torch.Tensor) -> torch.Tensor:
    return rows - rows.mean(dim=-1, keepdim=True)


def _vecdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ over dim 1 of a ⊙ b: [p,k,N] × [p,k,N] → [p,N] float32 (PyTorch sums bf16 in float32, then rounds)."""
    return (a * b).sum(dim=1).float()


def _weighted(weights: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Σ_r weights_r attn_r: [p,k] × [p,k,N] → [p,N] float32."""
    return torch.bmm(weights.unsqueeze(1).to(attn.dtype), attn).squeeze(1).float()


class FactoredMaskDecoder(FastMaskDecoder):
    """SAM's ``MaskDecoder`` for P prompts of N images without mask inputs, with factored image tokens (see the module
    docstring). Same arguments and results as :class:`FastMaskDecoder`; groups never span images.

    ``dtype=torch.bfloat16`` stores the per-pixel arrays ([p,H·T,N] attention scores and weights, per-image
    projections) in bf16; LayerNorm statistics are summed and the per-pixel scales kept in float32, and the few
    token-side rows stay float32."""

    def __init__(
        self,
        mask_decoder: MaskDecoder,
        image_pe: torch.Tensor,
        no_mask_embed: torch.Tensor,
        group: int = 16,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(mask_decoder, image_pe, no_mask_embed, group=group, dtype=dtype)
        i2t1, t2i2, i2t2, final = self.i2t[0], self.t2i[1], self.i2t[1], self.final
        # The positional encoding's projections are the same for every image.
        self.pe_keys2, self.pe_queries2, self.pe_keys_final = self._per_head_products(
            self.pe, [t2i2.w_k, i2t2.w_q, final.w_k]
        )
        # Per-image products, one matmul per input (see image_context).
        self.out1_weights = [i2t1.out_t]
        self.s1_weights = [t2i2.w_k, t2i2.w_v, i2t2.w_q]
        self.out2_weights = [i2t2.out_t]
        self.final_weights = [final.w_k, final.w_v]

    def _per_head_products(
        self, x: torch.Tensor, weights: list[torch.Tensor], extra: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """x [N,C] times each per-head weight [H,dh,C] → a list of [H,N,dh] in ``dtype``; with ``extra`` [C,D] the
        list ends with x·extra [N,D]. One matmul for all (x and weights rounded to ``dtype``)."""
        stacked = torch.cat([w.flatten(0, 1) for w in weights]).t()  # [C, n·H·dh]
        if extra is not None:
            stacked = torch.cat([stacked, extra.float()], dim=1)
        product = x.to(self.dtype) @ stacked.to(self.dtype)
        sizes = [w.shape[0] * w.shape[1] for w in weights] + ([] if extra is None else [extra.shape[1]])
        parts = list(product.split(sizes, dim=1))
        for i, w in enumerate(weights):
            parts[i] = parts[i].view(len(x), w.shape[0], -1).transpose(0, 1).contiguous()
        return parts

    def image_context(self, embeddings: torch.Tensor) -> FactoredContext:
        base = super().image_context(embeddings)
        per_image = [self._image_parts(embedding) for embedding in embeddings]  # one image at a time: in cache
        stacked = {name: torch.stack([parts[name] for parts in per_image]) for name in per_image[0]}
        return FactoredContext(*(getattr(base, name) for name in ("src", "keys", "values", "queries")), **stacked)

    def _image_parts(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """One image's fields of :class:`FactoredContext` from its embedding [C,64,64]."""
        norm1, norm2 = (block.norm4 for block in self.blocks)
        i2t1, i2t2 = self.i2t
        src_c = _centred(embedding.float().flatten(1).t() + self.no_mask)  # [N,C]
        s1 = src_c * norm1.weight
        s1c = _centred(s1)
        s1c_gamma = s1c * norm1.weight
        s2 = s1c * norm2.weight
        (src_out1,) = self._per_head_products(src_c, self.out1_weights)
        s1_keys, s1_values, s1_queries = self._per_head_products(s1, self.s1_weights)
        (s1c_gamma_out1,) = self._per_head_products(s1c_gamma, self.out1_weights)
        (s1c_out2,) = self._per_head_products(s1c, self.out2_weights)
        s2_keys, s2_values, s2_up = self._per_head_products(s2, self.final_weights, extra=self.up1_w)
        return {
            "src_sq": src_c.square().sum(-1),
            "src_out1": src_out1,
            "src_bias1": src_c @ i2t1.b_out,
            "s1_keys": s1_keys,
            "s1_values": s1_values,
            "s1_queries": s1_queries,
            "s1c_sq": s1c.square().sum(-1),
            "s1c_gamma_out1": s1c_gamma_out1,
            "s1c_gamma_bias1": s1c_gamma @ i2t1.b_out,
            "s1c_gamma_sum": s1c @ norm1.weight,
            "s1c_out2": s1c_out2,
            "s1c_bias2": s1c @ i2t2.b_out,
            "s1c_beta1": s1c @ norm1.bias,
            "s2_up": s2_up,
            "s2_keys": s2_keys,
            "s2_values": s2_values,
        }

    def _transformer(  # type: ignore[override]  (a FactoredContext of one image, B = 1: parts are indexed [0])
        self, ctx: FactoredContext, pe_tokens: torch.Tensor, needed: list[int]
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor, int, int], torch.Tensor]]:
        queries, attn = self._first_block_tokens(ctx, pe_tokens)  # attn [p,H·T,N], per head summing to 1 over T
        x1, coef1, means1 = self._first_norm(ctx, queries, attn)
        queries = self._second_block_tokens(ctx, queries, x1, pe_tokens)
        x2 = self._second_norm(ctx, queries, x1, coef1, means1, pe_tokens)
        q = (queries + pe_tokens)[:, needed]
        attended = self._attend(self.final, q, x2, ctx.s2_keys[0], ctx.s2_values[0], self.pe_keys_final)
        queries = self.decoder.transformer.norm_final_attn(queries[:, needed] + attended)
        w, b = self.up1_w.float(), self.up1_b.float()
        return queries, lambda keep, gy, gx: x2.linear(keep, gy, gx, ctx.s2_up[0], w, b)

    def _first_norm(
        self, c: FactoredContext, queries: torch.Tensor, attn: torch.Tensor
    ) -> tuple[_Factors, torch.Tensor, torch.Tensor]:
        """Block 1's image tokens ``LN(src + attnᵀ V1)`` as factors, with the token values' coefficients per head
        [p,H,T,dh] (V1 = coef·Wo_h + bo/H) and row means [p,H·T] for block 2's statistics."""
        i2t, norm = self.i2t[0], self.blocks[0].norm4
        values = i2t.token_values(queries)  # [p,H·T,C]
        coef = _heads(i2t.module.v_proj(queries), i2t.heads)  # [p,H,T,dh]
        means = values.mean(dim=-1)
        centred = values - means.unsqueeze(-1)
        # ||src_c + attnᵀ V1c||²: src_c·V1c = src_c·V1 = coef·(src_c Wo_hᵀ) + src_c·bo/H, and each head's attention
        # sums to 1 over its tokens, so the bias part adds up to src_c·bo.
        both = _per_head(coef.to(attn.dtype), c.src_out1[0]).mul_(2)
        both.baddbmm_((centred @ centred.transpose(1, 2)).to(attn.dtype), attn)
        sq = c.src_sq[0] + 2 * c.src_bias1[0] + _vecdot(attn, both)  # [p,N]
        inv = torch.rsqrt(sq / norm.weight.numel() + norm.eps)
        return _Factors(inv, (attn,), (centred * norm.weight,), norm.bias), coef, means

    def _second_block_tokens(
        self, c: FactoredContext, queries: torch.Tensor, x1: _Factors, pe_tokens: torch.Tensor
    ) -> torch.Tensor:
        block = self.blocks[1]
        q = queries + pe_tokens
        queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
        attended = self._attend(self.t2i[1], queries + pe_tokens, x1, c.s1_keys[0], c.s1_values[0], self.pe_keys2)
        queries = block.norm2(queries + attended)
        return block.norm3(queries + block.mlp(queries))

    def _second_norm(
        self,
        c: FactoredContext,
        queries: torch.Tensor,
        x1: _Factors,
        coef1: torch.Tensor,
        means1: torch.Tensor,
        pe_tokens: torch.Tensor,
    ) -> _Factors:
        """Block 2's image→token attention and image-token LayerNorm: ``LN(x1 + attnᵀ V2)`` as factors."""
        i2t, norm = self.i2t[1], self.blocks[1].norm4
        (attn1,), (rows1,) = x1.coefs, x1.rows  # x1 = r1 ⊙ (S1 + attn1ᵀ rows1) + β1
        r1 = x1.pixel
        keys = _heads(i2t.module.k_proj(queries + pe_tokens), i2t.heads) * i2t.scale  # [p,H,T,dh]
        fold = torch.einsum("phtd,hdc->phtc", keys, i2t.w_q).flatten(1, 2)  # [p,H·T,C] = k Wq_h
        # scale·k·(Wq (x1 + pe) + bq), softmax over each head's tokens.
        bias = (keys * i2t.b_q.unsqueeze(1)).sum(-1).flatten(1) + fold @ x1.bias  # [p,H·T]
        keys_low = keys.to(self.dtype)
        scores = x1.scores(fold, _per_head(keys_low, c.s1_queries[0]))
        scores.unflatten(1, (i2t.heads, -1)).add_(_per_head_view(keys_low, self.pe_queries2))
        scores.add_(bias.unsqueeze(-1).to(scores.dtype))
        attn2 = torch.softmax(scores.unflatten(1, (i2t.heads, -1)), dim=2).flatten(1, 2)  # [p,H·T,N]

        values = i2t.token_values(queries)  # [p,H·T,C] = coef2·Wo2_h + bo2/H
        coef2 = _heads(i2t.module.v_proj(queries), i2t.heads)
        v2c = _centred(values)
        u1c = _centred(rows1)
        beta1c = _centred(x1.bias)
        # x1 + attn2ᵀ V2 - mean = r1 ⊙ P1 + attn2ᵀ V2c + β1c, with P1 = S1c + attn1ᵀ U1c. Its squared norm:
        #   r1²·||P1||² + 2 r1·(P1·β1c) + ||β1c||² + Σ_r attn2_r (2 r1·(P1·V2c_r) + 2 β1c·V2c_r + (V2c V2cᵀ attn2)_r)
        # ||P1||² = ||S1c||² + Σ_r attn1_r (2 U1c_r·S1c + (U1c U1cᵀ attn1)_r), where U1c = V1c ⊙ γ1 (centred), so
        # U1c_r·S1c = coef1_r·((γ1 ⊙ S1c) Wo1_hᵀ) + (γ1 ⊙ S1c)·bo1/H - mean(V1_r)·(γ1·S1c).
        low = self.dtype
        both1 = _per_head(coef1.to(low), c.s1c_gamma_out1[0]).mul_(2)
        both1.baddbmm_((u1c @ u1c.transpose(1, 2)).to(low), attn1)
        mean_part = _weighted(means1, attn1)  # Σ_r attn1_r mean(V1_r) [p,N]
        p1_sq = c.s1c_sq[0] + 2 * c.s1c_gamma_bias1[0] - 2 * mean_part * c.s1c_gamma_sum[0] + _vecdot(attn1, both1)
        p1_beta = c.s1c_beta1[0] + _weighted(u1c @ beta1c, attn1)  # P1·β1c [p,N]
        # P1·V2c_r = coef2_r·(S1c Wo2_hᵀ) + S1c·bo2/H + (V2c U1cᵀ attn1)_r; the bias part adds up to S1c·bo2.
        p1_v2 = _per_head(coef2.to(low), c.s1c_out2[0]).baddbmm_((v2c @ u1c.transpose(1, 2)).to(low), attn1)
        both2 = torch.bmm((v2c @ v2c.transpose(1, 2)).to(low), attn2).addcmul_(p1_v2, r1.unsqueeze(1).to(low), value=2)
        beta_v2 = _weighted(v2c @ beta1c, attn2)  # Σ_r attn2_r β1c·V2c_r [p,N]
        sq = (
            r1.square() * p1_sq
            + 2 * r1 * (p1_beta + c.s1c_bias2[0])
            + beta1c.square().sum()
            + 2 * beta_v2
            + _vecdot(attn2, both2)
        )
        r2 = torch.rsqrt(sq / norm.weight.numel() + norm.eps)
        # LN = r2 ⊙ (r1 ⊙ P1 + attn2ᵀ V2c + β1c) ⊙ γ2 + β2 = r1 r2 ⊙ (S2 + attn1ᵀ (U1c γ2) + (attn2 / r1)ᵀ (V2c γ2)
        # + (1 / r1) (β1c γ2)) + β2. Head 0's weights in attn2 sum to 1 over its tokens, so the last term is folded
        # into the rows of head 0's tokens: Σ_t (attn2_0t / r1)(V2c_0t γ2 + β1c γ2).
        rows2 = v2c * norm.weight
        rows2[:, : rows2.shape[1] // i2t.heads] += beta1c * norm.weight
        return _Factors(
            r1 * r2,
            (attn1, attn2.mul_((1 / r1).unsqueeze(1).to(low))),
            (u1c * norm.weight, rows2),
            norm.bias,
        )

    def _attend(
        self,
        proj: _Proj,
        q_tokens: torch.Tensor,
        x: _Factors,
        s_keys: torch.Tensor,
        s_values: torch.Tensor,
        pe_keys: torch.Tensor,
    ) -> torch.Tensor:
        """Attention(q = tokens [p,T,C], k = x + pe, v = x) on factored x; ``s_keys``/``s_values`` are S Wkᵀ / S Wvᵀ
        and ``pe_keys`` PE Wkᵀ per head [H,N,dh]. Returns [p,T,C]."""
        p, t, _ = q_tokens.shape
        q = _heads(proj.module.q_proj(q_tokens), proj.heads) * proj.scale  # [p,H,T,dh]
        fold = torch.einsum("phtd,hdc->phtc", q, proj.w_k).flatten(1, 2)  # [p,H·T,C]
        # The key bias and q·Wk·bias are constant along the softmax axis (pixels): dropped.
        q_low = q.to(self.dtype)
        scores = x.scores(fold, _per_head(q_low, s_keys))
        scores.unflatten(1, (proj.heads, t)).add_(_per_head_view(q_low, pe_keys))
        weights = torch.softmax(scores, dim=-1).mul_(x.pixel.unsqueeze(1).to(scores.dtype))  # w ⊙ pixel
        # Σ_n w_n (Wv x_n + bv) = (w ⊙ pixel)·(S Wvᵀ) + Σ_j ((w ⊙ pixel) coef_jᵀ)(rows_j Wvᵀ) + Wv·bias + bv.
        values = torch.einsum("phtn,hnd->phtd", weights.unflatten(1, (proj.heads, t)), s_values).float()
        for coef, rows in zip(x.coefs, x.rows, strict=True):
            mixed = torch.bmm(weights, coef.transpose(1, 2)).float().unflatten(1, (proj.heads, t))  # [p,H,T,k]
            rows_v = (rows @ proj.module.v_proj.weight.t()).unflatten(-1, (proj.heads, -1))  # [p,k,H,dh]
            values = values + torch.einsum("phtk,pkhd->phtd", mixed, rows_v)
        values = values + proj.module.v_proj(x.bias).unflatten(-1, (proj.heads, -1)).unsqueeze(1)
        return proj.module.out_proj(values.transpose(1, 2).flatten(2))
