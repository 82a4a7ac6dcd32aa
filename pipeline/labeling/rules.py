"""Cross-field rules of the labeling configuration, checked on the driver before any work (the range of each single
field is declared on the field itself, :mod:`pipeline.config.sections`)."""

from __future__ import annotations

from pipeline.config.rules import require_at_least_one, require_fractions
from pipeline.config.sections import ConfigError, GridConfig, LabelConfig


def validate_label_config(cfg: LabelConfig) -> None:
    """Cross-field rules, checked before any work; raises ConfigError naming the field."""
    from pipeline.models import resolve_name

    if not cfg.input.uri:
        raise ConfigError("--input is required (input.uri)")
    if not cfg.output.uri:
        raise ConfigError("--output is required (output.uri)")
    try:
        resolve_name(cfg.model.name)
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None
    if cfg.model.decoder_precision == "bf16" and cfg.model.backend != "torch":
        raise ConfigError(f"model.decoder_precision={cfg.model.decoder_precision} needs model.backend=torch")
    if cfg.model.precision not in ("fp32", "auto") and cfg.model.backend == "onnx":
        raise ConfigError(f"model.precision={cfg.model.precision} needs model.backend=torch or tensorrt (onnx: fp32)")
    if cfg.prompts.mode == "yolo" and not cfg.yolo.weights:
        raise ConfigError("--prompts yolo needs detector weights: --set yolo.weights=PATH|s3://...|hf://... (.pt)")
    if cfg.prompts.mode == "autoppn" and not cfg.autoppn.weights:
        raise ConfigError("--prompts autoppn needs its head: --set autoppn.weights=PATH|s3://...|hf://...")
    if cfg.prompts.mode == "boxes" and not cfg.prompts.file:
        raise ConfigError("--prompts boxes needs --prompts-file (a COCO .json or .parquet of boxes)")
    if cfg.prompts.mode != "boxes" and cfg.prompts.file:
        raise ConfigError(f"--prompts-file is only used with --prompts boxes, not {cfg.prompts.mode}")
    require_fractions(
        cfg,
        "grid.pred_iou_thresh",
        "grid.stability_score_thresh",
        "grid.box_nms_thresh",
        "grid.crop_nms_thresh",
        "grid.max_mask_area_frac",
        "boxes.pred_iou_thresh",
        "boxes.stability_score_thresh",
        "yolo.conf",
        "yolo.iou",
        "yolo.pred_iou_thresh",
        "yolo.stability_score_thresh",
        "autoppn.score_thresh",
        "autoppn.pred_iou_thresh",
        "autoppn.stability_score_thresh",
        "autoppn.box_nms_thresh",
        "autoppn.max_mask_area_frac",
    )
    require_at_least_one(
        cfg,
        "grid.points_per_side",
        "grid.points_per_batch",
        "grid.crop_n_points_downscale_factor",
        "decode.batch_size",
        "decode.max_pixels",
        "decode.max_file_bytes",
        "segment.batch_size",
        "segment.decoder_chunk",
        "storage.max_attempts",
        "segment.max_prompts_per_image",
        "segment.max_masks_per_image",
        "yolo.imgsz",
        "yolo.max_det",
        "yolo.batch_size",
        "autoppn.top_n",
    )
    if cfg.grid.crop_n_layers < 0 or cfg.grid.min_mask_region_area < 0:
        raise ConfigError("grid.crop_n_layers and grid.min_mask_region_area must not be negative")
    if cfg.output.report_sample < 0:
        raise ConfigError(f"output.report_sample must not be negative, got {cfg.output.report_sample}")
    if cfg.autoppn.nms_radius < 0 or cfg.yolo.border_snap_px < 0 or cfg.autoppn.min_mask_region_area < 0:
        raise ConfigError(
            "autoppn.nms_radius, autoppn.min_mask_region_area and yolo.border_snap_px must not be negative"
        )
    if cfg.input.limit is not None and cfg.input.limit < 1:
        raise ConfigError(f"input.limit must be at least 1, got {cfg.input.limit}")
    if cfg.prompts.mode == "grid" and grid_prompts_per_image(cfg.grid) > cfg.segment.max_prompts_per_image:
        raise ConfigError(
            f"grid.points_per_side={cfg.grid.points_per_side} with grid.crop_n_layers={cfg.grid.crop_n_layers} makes "
            f"{grid_prompts_per_image(cfg.grid)} prompts per image, over "
            f"segment.max_prompts_per_image={cfg.segment.max_prompts_per_image}"
        )


def grid_prompts_per_image(grid: GridConfig) -> int:
    """Point prompts the grid mode makes for one image: every crop layer's crops times its points."""
    total = 0
    for layer in range(grid.crop_n_layers + 1):
        side = max(1, int(grid.points_per_side / grid.crop_n_points_downscale_factor**layer))
        total += (2**layer) ** 2 * side * side
    return total
