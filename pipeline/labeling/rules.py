"""Cross-field rules of the labeling configuration, checked on the driver before any work (the range of each single
field is declared on the field itself, :mod:`pipeline.config.sections`)."""

from __future__ import annotations

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
    if cfg.model.aot_compile and cfg.model.backend != "torch":
        raise ConfigError(f"model.aot_compile needs model.backend=torch, not {cfg.model.backend}")
    if cfg.model.aot_compile and cfg.model.compile:
        raise ConfigError("model.aot_compile and model.compile are two ways to compile the encoder: set one")
    if not cfg.model.compile_buckets or min(cfg.model.compile_buckets) < 1:
        raise ConfigError(f"model.compile_buckets must be batch sizes >= 1, got {list(cfg.model.compile_buckets)}")
    if cfg.decode.device == "cuda" and cfg.model.device == "cpu":
        raise ConfigError("decode.device=cuda decodes on the segment actor's GPU: it needs model.device auto or cuda")
    if cfg.decode.device == "cuda" and cfg.model.backend != "torch":
        raise ConfigError(f"decode.device=cuda needs model.backend=torch, not {cfg.model.backend}")
    if cfg.decode.device == "cuda" and (
        cfg.prompts.mode in ("yolo", "text") or (cfg.prompts.mode == "grid" and cfg.grid.crop_n_layers)
    ):
        raise ConfigError(
            "decode.device=cuda does not work with detector prompts or grid crop layers (they need pixels)"
        )
    if cfg.prompts.mode == "yolo" and not cfg.yolo.weights:
        raise ConfigError("--prompts yolo needs detector weights: --set yolo.weights=PATH|s3://...|hf://... (.pt)")
    if cfg.prompts.mode == "text" and not cfg.text.weights:
        raise ConfigError("--prompts text needs the detector: --set text.weights=FOLDER|s3://prefix/|hf://owner/repo")
    if cfg.classify.enabled and not cfg.classify.weights:
        raise ConfigError("classify needs the classifier: --set classify.weights=FOLDER|s3://prefix/|hf://owner/repo")
    if cfg.classify.weights and not cfg.classify.enabled:
        raise ConfigError("classify.weights is set but there are no classes: --set classify.classes=[...] or file")
    if cfg.prompts.mode == "autoppn" and not cfg.autoppn.weights:
        raise ConfigError("--prompts autoppn needs its head: --set autoppn.weights=PATH|s3://...|hf://...")
    if cfg.prompts.mode == "boxes" and not cfg.prompts.file:
        raise ConfigError("--prompts boxes needs --prompts-file (a COCO .json or .parquet of boxes)")
    if cfg.prompts.mode != "boxes" and cfg.prompts.file:
        raise ConfigError(f"--prompts-file is only used with --prompts boxes, not {cfg.prompts.mode}")
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
