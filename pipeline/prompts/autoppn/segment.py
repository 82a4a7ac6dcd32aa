"""AutoPPN prompts → masks inside the segment actor, filtered exactly like grid mode.

    masks = segment_autoppn(runtime, head, embeddings, original_hw, cfg, chunk)   # list[GridMasks], one per image

Each Point-NMS peak gives one prompt (``cfg.prompt_mode``): ``box+point`` and ``box`` use the single-mask token (as
MobileSAMv2 does for boxes), ``point`` the best of the three multimask outputs by predicted IoU, so one mask per
prompt. Prompts of all images share decoder calls of ``chunk`` prompts; each call's masks are filtered on the
256×256 logits (predicted IoU, stability, area), then per image box NMS and upsampling of the survivors only
(:func:`pipeline.segment.grid.finalize_whole_image`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pipeline.config.sections import AutoPPNConfig, GridConfig
from pipeline.models.fast_decoder import DecodeHints
from pipeline.prompts.autoppn.model import AutoPPN
from pipeline.prompts.autoppn.proposals import Proposals, propose
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import from_prompt_frame
from pipeline.segment.grid import GridMasks, finalize_whole_image
from pipeline.segment.grid_filters import Candidates, filter_low_res, read_low_res_hw
from pipeline.segment.masks import best_of, select_masks
from pipeline.segment.prompts import PromptBatch, make_prompts
from pipeline.timing import StageTimer


def filter_config(cfg: AutoPPNConfig) -> GridConfig:
    """The grid-mode filter settings that AutoPPN's masks go through."""
    return dataclasses.replace(
        GridConfig(),
        pred_iou_thresh=cfg.pred_iou_thresh,
        stability_score_thresh=cfg.stability_score_thresh,
        stability_score_offset=cfg.stability_score_offset,
        box_nms_thresh=cfg.box_nms_thresh,
        min_mask_region_area=cfg.min_mask_region_area,
        max_mask_area_frac=cfg.max_mask_area_frac,
    )


def make_autoppn_prompts(proposals: Proposals, mode: str) -> tuple[PromptBatch, bool]:
    """The decoder prompts of the proposals (1024 frame) and whether they use the multimask outputs."""
    ones = np.ones((len(proposals), 1), np.float32)
    points = proposals.points[:, None, :]
    if mode == "box+point":
        return make_prompts(proposals.image_index, points, ones, boxes=proposals.boxes), False
    if mode == "box":
        return make_prompts(proposals.image_index, boxes=proposals.boxes), False
    if mode == "point":
        return make_prompts(proposals.image_index, points, ones), True
    raise ValueError(f"autoppn.prompt_mode must be box+point, box or point, got {mode!r}")


def segment_autoppn(
    runtime: SamRuntime,
    head: AutoPPN,
    embeddings: torch.Tensor,
    original_hw: np.ndarray,
    cfg: AutoPPNConfig,
    chunk: int,
    timer: StageTimer | None = None,
) -> list[GridMasks]:
    """Masks of B images from their embeddings [B,256,64,64] (see the module doc); ``original_hw`` [B,2].

    ``timer`` receives the seconds of the stages prompts (head + Point-NMS), decode_masks, filter and rle.
    """
    timer = timer or StageTimer.off()
    original_hw = np.asarray(original_hw, np.int64).reshape(-1, 2)
    with timer("prompts"):
        proposals = propose(
            head, embeddings, original_hw, score_thresh=cfg.score_thresh, nms_radius=cfg.nms_radius, top_n=cfg.top_n
        )
        prompts, multimask = make_autoppn_prompts(proposals, cfg.prompt_mode)
    grid_cfg = filter_config(cfg)
    starts = np.searchsorted(proposals.image_index, np.arange(len(original_hw) + 1))  # prompt range of each image
    # As in grid mode, the decoder may skip logits the filters never read: other tokens, prompts under the IoU
    # threshold, low-res rows and columns outside the image.
    read_hw = np.array([read_low_res_hw(tuple(original_hw[i])) for i in proposals.image_index], np.int64)
    hints = DecodeHints(
        mask_tokens=(1, 2, 3) if multimask else (0,),
        min_iou=grid_cfg.pred_iou_thresh if grid_cfg.pred_iou_thresh > 0.0 else None,
        low_res_hw=read_hw.reshape(-1, 2),
        dense=True,
    )
    pending: list[list[Candidates]] = [[] for _ in original_hw]
    for start in range(0, len(prompts), chunk):
        stop = min(start + chunk, len(prompts))
        with timer("decode_masks"):
            rows = slice(start, stop)
            logits, iou = select_masks(*runtime.decode(embeddings, prompts.take(rows), hints.take(rows)), multimask)
        with timer("filter"):
            if multimask:
                best, best_iou = best_of(logits, iou)
                logits, iou = best[:, None], best_iou[:, None]  # [n,1,256,256], [n,1]
            for image in np.unique(proposals.image_index[start:stop]):
                lo, hi = max(start, starts[image]), min(stop, starts[image + 1])
                pending[image].append(
                    _filter(
                        logits[lo - start : hi - start],
                        iou[lo - start : hi - start],
                        lo - starts[image],
                        tuple(original_hw[image]),
                        grid_cfg,
                    )
                )
    results = []
    for image, hw in enumerate(original_hw.tolist()):
        points = from_prompt_frame(proposals.points[starts[image] : starts[image + 1]], tuple(hw))
        candidates = Candidates.cat(pending[image]) if pending[image] else _no_candidates(runtime.device)
        with timer("rle"):
            results.append(finalize_whole_image(candidates, points, tuple(hw), grid_cfg))
    return results


def _filter(
    logits: torch.Tensor, iou: torch.Tensor, first_prompt: int, image_hw: tuple[int, int], cfg: GridConfig
) -> Candidates:
    """Low-res filters of n prompts' masks [n,1,256,256]; keys become prompt index (within the image) * 3."""
    h, w = (int(v) for v in image_hw)
    c = filter_low_res(logits, iou, 0, 0, (0, 0, w, h), (h, w), cfg)
    return dataclasses.replace(c, keys=(3 * (first_prompt + c.keys)).astype(np.int64))


def _no_candidates(device: torch.device) -> Candidates:
    empty = torch.zeros(0, device=device)
    return Candidates(
        torch.zeros((0, 256, 256), device=device),
        empty,
        empty,
        torch.zeros((0, 4), device=device),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )
