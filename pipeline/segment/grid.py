"""Segment everything: SAM's automatic mask generator for a batch of images, filtered on low-res logits.

    masks = generate_grid_masks(runtime, canvases, input_hw, original_hw, cfg)   # list[GridMasks], one per image

Semantics are those of ``SamAutomaticMaskGenerator.generate`` with the same parameters (see
:class:`pipeline.config.sections.GridConfig`), plus ``max_mask_area_frac``. The work is arranged differently:

1. One encoder call for every *view*: each whole image (its canvas as given) and, with ``crop_n_layers > 0``,
   each crop, cut from the original image and resized like a new image.
2. The grid points of all views form one prompt list, decoded in shared calls of ``points_per_batch`` prompts.
3. Each call's masks are scored and filtered on the 256×256 logits (:mod:`pipeline.segment.grid_filters`); when a
   view's last prompt is decoded its survivors go through box NMS, and when an image's last view is done, through
   cross-crop NMS.
4. Only the survivors are upsampled (``upscale_logits`` semantics), ``points_per_batch`` masks at a time, then
   thresholded, optionally cleaned of small regions (then NMS again), RLE-encoded, boxed and measured.

Results are sorted by predicted IoU, descending, then by prompt order (view, point, token); the algorithm does not
depend on how images are batched, and on CPU neither do the results (bit-exact in fp32). Stability scores are
computed on the low-res logits; ``max_mask_area_frac`` is estimated there before NMS (so near-full masks suppress
nothing) and checked exactly on the final masks. With ``cfg.exact`` every candidate above the IoU threshold is
upsampled instead, and stability, boxes, the crop-edge test and NMS use the full-resolution masks, as upstream:
the reference generator's output, at its cost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything.utils.amg import build_all_layer_point_grids, generate_crop_boxes, remove_small_regions

from pipeline.config.sections import GridConfig
from pipeline.models.fast_decoder import DecodeHints
from pipeline.runtime.base import SamRuntime
from pipeline.segment.geometry import to_prompt_frame
from pipeline.segment.grid_filters import Candidates, filter_low_res, nms_in_order, read_low_res_hw, stable_order
from pipeline.segment.masks import MASK_THRESHOLD, encode_rle, masks_to_boxes_xyxy, select_masks, upscale_logits
from pipeline.segment.predictor import prepare_images
from pipeline.segment.prompts import PromptBatch, make_prompts
from pipeline.segment.rle import encode_on_device, encodes_on_device
from pipeline.timing import StageTimer

UPSAMPLE_PIXELS = 1 << 26


@dataclass(frozen=True)
class GridMasks:
    """The K masks kept for one image, in output order (predicted IoU descending, then prompt order)."""

    rles: list[dict]
    """COCO compressed RLE of each mask at the original size (``counts`` is str)."""
    boxes_xyxy: np.ndarray
    """[K,4] float32, tight box of the full-resolution mask in original pixels (inclusive pixel indices)."""
    areas: np.ndarray
    """[K] int64, mask pixels."""
    predicted_iou: np.ndarray
    """[K] float32, the decoder's IoU prediction."""
    stability_score: np.ndarray
    """[K] float32, stability of the mask under a ±offset logit threshold, on the low-res logits."""
    point_coords: np.ndarray
    """[K,2] float32, the grid point (x, y) that prompted the mask, in original pixels."""
    crop_boxes: np.ndarray
    """[K,4] int64, XYXY crop of the original image the mask was decoded from (the whole image for layer 0)."""


@dataclass(frozen=True)
class _View:
    image: int
    layer: int
    """Crop layer: 0 is the whole image."""
    crop_box: tuple[int, int, int, int]
    """XYXY in the image's original pixels."""
    points: np.ndarray
    """[n,2] float64 grid points (x, y) in view pixels."""

    @property
    def hw(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.crop_box
        return y1 - y0, x1 - x0


def generate_grid_masks(
    runtime: SamRuntime,
    canvases: np.ndarray,
    input_hw: np.ndarray,
    original_hw: np.ndarray,
    cfg: GridConfig,
    originals: Sequence[np.ndarray] | None = None,
    timer: StageTimer | None = None,
) -> list[GridMasks]:
    """Grid masks of B images, encoded and decoded together.

    Args:
        runtime: the model (any :class:`SamRuntime` backend).
        canvases: [B,S,S,3] uint8, S = ``runtime.encoder_input_size``, each image resized top-left (as
            :func:`pipeline.segment.predictor.prepare_images` makes them). input_hw: [B,2] resized (h, w).
        original_hw: [B,2] original (h, w).
        cfg: grid parameters.
        originals: the B full-resolution HWC uint8 RGB images; needed only when ``cfg.crop_n_layers > 0``.
        timer: receives the seconds of the stages (encode, prompts, decode_masks, filter, rle).
    Returns:
        One :class:`GridMasks` per image, in input order.
    """
    canvases, input_hw, original_hw = _check_inputs(runtime, canvases, input_hw, original_hw, cfg, originals)
    timer = timer or StageTimer.off()
    with timer("prompts"):
        views = _plan_views(original_hw, cfg)
    if not views:
        return []
    with timer("encode"):
        size = runtime.encoder_input_size
        embeddings = runtime.encode(*_view_canvases(views, canvases, input_hw, originals, size))
    with timer("prompts"):
        prompts, prompt_view, points = _grid_prompts(views)
    results: list[GridMasks] = []
    kept: list[Candidates] = []
    # Views finish in order, image by image, so only one image's survivors are held at a time.
    for view, survivors in _decode_views(runtime, embeddings, prompts, prompt_view, views, original_hw, cfg, timer):
        kept.append(survivors)
        image = views[view].image
        if view + 1 < len(views) and views[view + 1].image == image:
            continue
        with timer("filter"):
            merged = Candidates.cat(kept)
            if cfg.crop_n_layers > 0:
                merged = _nms_across_crops(merged, views, cfg.crop_nms_thresh)
        with timer("rle"):
            results.append(_finalize_image(merged, views, points, tuple(original_hw[image].tolist()), cfg))
        kept = []
    return results


def finalize_whole_image(c: Candidates, points: np.ndarray, image_hw: tuple[int, int], cfg: GridConfig) -> GridMasks:
    """Box NMS, upsampling, cleanup and area cap for candidates of one image decoded from whole-image prompts.

    For prompt sources other than the grid (AutoPPN) that reuse its filters: ``c`` comes from
    :func:`pipeline.segment.grid_filters.filter_low_res` with view 0 and the whole image as crop box, its keys are
    ``prompt index * 3 + token``, and ``points`` [N,2] holds each prompt's point in original pixels.
    """
    view = _View(0, 0, (0, 0, int(image_hw[1]), int(image_hw[0])), points)
    return _finalize_image(_nms_within_view(c, cfg.box_nms_thresh), [view], points, image_hw, cfg)


def _decode_views(
    runtime: SamRuntime,
    embeddings: Any,
    prompts: PromptBatch,
    prompt_view: np.ndarray,
    views: list[_View],
    original_hw: np.ndarray,
    cfg: GridConfig,
    timer: StageTimer,
) -> Iterator[tuple[int, Candidates]]:
    """Decodes all prompts in shared calls of ``points_per_batch`` and filters each call on the low-res logits.

    Yields (view, its masks that survive the filters and box NMS) as each view's last prompt is decoded, in view
    order; a call spans as many views (and images) as it needs to fill up.
    """
    view_end = np.cumsum([len(v.points) for v in views])
    # The filters read tokens 1-3 above the IoU threshold, inside each view's resized image (+1 for upsampling).
    read_hw = np.array([read_low_res_hw(views[v].hw) for v in prompt_view], np.int64).reshape(-1, 2)
    min_iou = cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0.0 else None
    hints = DecodeHints(mask_tokens=(1, 2, 3), min_iou=min_iou, low_res_hw=read_hw, dense=True)
    pending: list[Candidates] = []
    for start in range(0, len(prompts), cfg.points_per_batch):
        stop = min(start + cfg.points_per_batch, len(prompts))
        rows = slice(start, stop)
        with timer("decode_masks"):
            decoded = runtime.decode(embeddings, prompts.take(rows), hints.take(rows))
        logits, iou = select_masks(*decoded, multimask=True)
        segment = start
        while segment < stop:
            view = int(prompt_view[segment])
            segment_stop = min(stop, int(view_end[view]))
            rows = slice(segment - start, segment_stop - start)
            image_hw = tuple(original_hw[views[view].image].tolist())
            with timer("filter"):
                crop = views[view].crop_box
                pending.append(filter_low_res(logits[rows], iou[rows], 3 * segment, view, crop, image_hw, cfg))
                done = segment_stop == view_end[view]
                survivors = _nms_within_view(Candidates.cat(pending), cfg.box_nms_thresh) if done else None
            if done:
                yield view, survivors
                pending = []
            segment = segment_stop


def _check_inputs(
    runtime: SamRuntime,
    canvases: np.ndarray,
    input_hw: np.ndarray,
    original_hw: np.ndarray,
    cfg: GridConfig,
    originals: Sequence[np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = runtime.encoder_input_size
    canvases = np.asarray(canvases)
    if canvases.ndim != 4 or canvases.shape[1:] != (size, size, 3) or canvases.dtype != np.uint8:
        raise ValueError(f"canvases must be [B,{size},{size},3] uint8, got {canvases.shape} {canvases.dtype}")
    b = len(canvases)
    input_hw = np.asarray(input_hw, dtype=np.int64)
    original_hw = np.asarray(original_hw, dtype=np.int64)
    if input_hw.shape != (b, 2) or original_hw.shape != (b, 2):
        raise ValueError(f"input_hw and original_hw must be [{b},2], got {input_hw.shape} and {original_hw.shape}")
    if cfg.points_per_batch < 1 or cfg.crop_n_layers < 0 or cfg.crop_n_points_downscale_factor < 1:
        raise ValueError("grid config needs points_per_batch >= 1, crop_n_layers >= 0, downscale factor >= 1")
    if int(cfg.points_per_side / cfg.crop_n_points_downscale_factor**cfg.crop_n_layers) < 1:
        raise ValueError(
            f"points_per_side={cfg.points_per_side} leaves no grid points in crop layer {cfg.crop_n_layers}"
        )
    if cfg.crop_n_layers > 0:
        if originals is None:
            raise ValueError("crop_n_layers > 0 needs the original images (originals=...)")
        if len(originals) != b or any(
            o.shape != (*hw, 3) for o, hw in zip(originals, original_hw.tolist(), strict=True)
        ):
            raise ValueError("originals must be B full-resolution HxWx3 images matching original_hw")
    return canvases, input_hw, original_hw


def _plan_views(original_hw: np.ndarray, cfg: GridConfig) -> list[_View]:
    """Every image's views, image by image: the whole image first, then its crops layer by layer."""
    grids = build_all_layer_point_grids(cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor)
    views = []
    for image, (h, w) in enumerate(original_hw.tolist()):
        crop_boxes, layers = generate_crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
        for (x0, y0, x1, y1), layer in zip(crop_boxes, layers, strict=True):
            points = grids[layer] * np.array([[x1 - x0, y1 - y0]])
            views.append(_View(image, layer, (x0, y0, x1, y1), points))
    return views


def _view_canvases(
    views: list[_View],
    canvases: np.ndarray,
    input_hw: np.ndarray,
    originals: Sequence[np.ndarray] | None,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder inputs of all views, in view order: the given canvas for a whole image, a resized cut for a crop."""
    if len(views) == len(canvases):
        return canvases, input_hw
    out = np.empty((len(views), size, size, 3), np.uint8)
    out_hw = np.empty((len(views), 2), np.int64)
    for i, view in enumerate(views):
        if view.layer == 0:
            out[i], out_hw[i] = canvases[view.image], input_hw[view.image]
        else:
            x0, y0, x1, y1 = view.crop_box
            cut, cut_hw = prepare_images([originals[view.image][y0:y1, x0:x1]], size)
            out[i], out_hw[i] = cut[0], cut_hw[0]
    return out, out_hw


def _grid_prompts(views: list[_View]) -> tuple[PromptBatch, np.ndarray, np.ndarray]:
    """One single-point prompt per grid point of every view, in view order.

    Returns:
        The prompts (image_index = view index, points in the 1024 frame of their view), the view of each prompt
        [N] int64, and each point in original image pixels [N,2] float64.
    """
    coords = np.concatenate([to_prompt_frame(v.points, v.hw) for v in views])  # [N,2]
    prompt_view = np.concatenate([np.full(len(v.points), i, np.int64) for i, v in enumerate(views)])
    points = np.concatenate([v.points + np.array(v.crop_box[:2]) for v in views])
    prompts = make_prompts(prompt_view, coords[:, None, :], np.ones((len(coords), 1), np.float32))
    return prompts, prompt_view, points


def _nms_within_view(c: Candidates, threshold: float) -> Candidates:
    """Box NMS by predicted IoU (ties: prompt order), as upstream runs it per crop."""
    order = stable_order(-c.iou.cpu().numpy(), c.keys)
    return c.take(nms_in_order(c.boxes, order, threshold))


def _nms_across_crops(c: Candidates, views: list[_View], threshold: float) -> Candidates:
    """Box NMS across an image's views preferring smaller crops (ties: predicted IoU, prompt order)."""
    crop_area = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in (views[v].crop_box for v in c.views)])
    order = stable_order(crop_area, -c.iou.cpu().numpy(), c.keys)
    return c.take(nms_in_order(c.boxes, order, threshold))


def _finalize_image(
    c: Candidates, views: list[_View], points: np.ndarray, image_hw: tuple[int, int], cfg: GridConfig
) -> GridMasks:
    """Upsamples one image's survivors, then the optional small-region cleanup (with its NMS) and the area cap."""
    c = c.take(stable_order(-c.iou.cpu().numpy(), c.keys))
    rles, boxes, areas, changed = _upsample(c, views, image_hw, cfg)
    keep = np.arange(len(c))
    if cfg.min_mask_region_area > 0:
        # As upstream: masks that needed no cleanup win the NMS, so a cleaned duplicate never replaces them.
        threshold = max(cfg.box_nms_thresh, cfg.crop_nms_thresh)
        keep = np.sort(nms_in_order(torch.as_tensor(boxes), stable_order(changed, keep), threshold))
    if cfg.max_mask_area_frac < 1.0:
        keep = keep[areas[keep] <= cfg.max_mask_area_frac * image_hw[0] * image_hw[1]]
    return GridMasks(
        rles=[rles[i] for i in keep],
        boxes_xyxy=boxes[keep],
        areas=areas[keep],
        predicted_iou=c.iou.cpu().numpy()[keep].astype(np.float32),
        stability_score=c.stability.cpu().numpy()[keep].astype(np.float32),
        point_coords=points[c.keys[keep] // 3].astype(np.float32).reshape(-1, 2),
        crop_boxes=np.array([views[v].crop_box for v in c.views[keep]], np.int64).reshape(-1, 4),
    )


def _upsample(
    c: Candidates, views: list[_View], image_hw: tuple[int, int], cfg: GridConfig
) -> tuple[list[dict], np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution masks of all candidates, a bounded number at a time, kept only as RLE.

    Returns:
        RLEs [N], boxes [N,4] float32 XYXY (original pixels), areas [N] int64, and whether the small-region
        cleanup changed each mask [N] bool; all in the candidates' order.
    """
    rles: list[dict] = [{}] * len(c)
    boxes = np.zeros((len(c), 4), np.float32)
    areas = np.zeros(len(c), np.int64)
    changed = np.zeros(len(c), bool)
    # At most ~64 M full-resolution logits at once (256 MB): 64 masks of 1 MP, 5 of 12 MP.
    step = max(1, min(cfg.points_per_batch, UPSAMPLE_PIXELS // (image_hw[0] * image_hw[1])))
    # The small-region cleanup runs on the host, so with it the masks go there as pixels.
    on_device = encodes_on_device(c.logits.device) and cfg.min_mask_region_area == 0
    for view in np.unique(c.views):
        positions = np.flatnonzero(c.views == view)
        for start in range(0, len(positions), step):
            pos = positions[start : start + step]
            rows = torch.as_tensor(pos, device=c.logits.device)
            if on_device:
                runs = encode_on_device(_full_masks_t(c.logits[rows], views[view], image_hw))
                boxes[pos], areas[pos], encoded = runs.boxes_xyxy, runs.areas, runs.rles()
            else:
                full, boxes[pos], changed[pos] = _full_masks(
                    c.logits[rows], views[view], image_hw, cfg.min_mask_region_area
                )
                areas[pos], encoded = full.sum(axis=(1, 2)), encode_rle(full)
            for i, rle in zip(pos, encoded, strict=True):
                rles[i] = rle
    return rles, boxes, areas, changed


def _full_masks_t(logits: torch.Tensor, view: _View, image_hw: tuple[int, int]) -> torch.Tensor:
    """Low-res logits [n,256,256] of one view → masks on the whole image, transposed [n,W,H] bool, on their device."""
    x0, y0, x1, y1 = view.crop_box
    masks_t = (upscale_logits(logits, view.hw) > MASK_THRESHOLD).transpose(-1, -2)  # [n,w,h], as the host's masks
    if (x0, y0, x1, y1) == (0, 0, image_hw[1], image_hw[0]):
        return masks_t.contiguous()
    full_t = masks_t.new_zeros((len(logits), image_hw[1], image_hw[0]))
    full_t[:, x0:x1, y0:y1] = masks_t
    return full_t


def _full_masks(
    logits: torch.Tensor, view: _View, image_hw: tuple[int, int], min_region_area: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low-res logits [n,256,256] of one view → masks [n,H,W] bool on the whole image, boxes [n,4], changed [n]."""
    x0, y0, x1, y1 = view.crop_box
    masks = upscale_logits(logits, view.hw) > MASK_THRESHOLD  # [n,h,w]
    boxes = (masks_to_boxes_xyxy(masks).float() + masks.new_tensor([x0, y0, x0, y0], dtype=torch.float32)).cpu()
    full = np.zeros((len(logits), *image_hw), bool)
    full[:, y0:y1, x0:x1] = masks.cpu().numpy()
    changed = np.zeros(len(logits), bool)
    if min_region_area > 0:
        for i in range(len(full)):
            full[i], holes = remove_small_regions(full[i], min_region_area, mode="holes")
            full[i], islands = remove_small_regions(full[i], min_region_area, mode="islands")
            changed[i] = holes or islands
            if changed[i]:
                boxes[i] = masks_to_boxes_xyxy(torch.from_numpy(full[i][None]))[0]
    return full, boxes.numpy(), changed
