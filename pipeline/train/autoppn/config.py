"""Configuration of ``python -m jobs.train_autoppn`` (same typed, strict system as the labeling job)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config.rules import AtLeastOne, Positive, UnitInterval
from pipeline.config.sections import ConfigError, ModelConfig, RayConfig, StorageConfig


@dataclass(frozen=True)
class DataConfig:
    """Mask datasets: a COCO instances .json or a folder of SA-1B per-image .json files, local or s3://."""

    train: str = ""
    """Training set."""
    val: str = ""
    """Validation set (held out)."""
    train_images: str | None = None
    """Folder the COCO file_names are relative to (default: the folder of the COCO file)."""
    val_images: str | None = None
    """Same, for the validation set."""
    limit: int | None = None
    """Use only the first N training images (sorted by image id)."""
    val_limit: int | None = None
    """Use only the first N validation images."""


@dataclass(frozen=True)
class HeadConfig:
    """The AutoPPN architecture (written to the checkpoint's card)."""

    channels: AtLeastOne = 128
    """Width C of the head."""
    mspm_blocks: int = 2
    """MSPM blocks."""
    out_stride: int = 8
    """Output stride in the 1024 frame: 8 (128×128 cells) or 16 (64×64)."""
    group_thresholds: tuple[float, float] = (0.05, 0.25)
    """Size-group limits of r = max(box w, h) / max(image h, w)."""


@dataclass(frozen=True)
class OptimConfig:
    """Schedule and losses."""

    epochs: AtLeastOne = 12
    """Passes over the training set."""
    batch_size: AtLeastOne = 16
    """Images per step and worker."""
    lr: Positive = 1e-3
    """AdamW learning rate (cosine decay to 0 over the run)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    heat_weight: float = 10.0
    """Weight of the hard-mined heatmap MSE."""
    box_weight: float = 1.0
    """Weight of the smooth-L1 box loss."""
    neg_ratio: float = 3.0
    """Hard negatives per positive cell in the heatmap loss."""
    min_neg: int = 64
    """At least this many hard negatives per image."""
    seed: int = 0
    """Seed of initialisation and shuffling."""


@dataclass(frozen=True)
class EmbeddingsConfig:
    """Frozen-encoder embeddings."""

    precompute: bool = True
    """Encode every image once into fp16 shards and reuse them (across epochs and reruns); false encodes each step."""
    dir: str | None = None
    """Where shards live (local or s3://); default <output>/embeddings."""
    shard_size: AtLeastOne = 64
    """Images per shard (one Ray task each)."""
    batch_size: AtLeastOne = 8
    """Images per encoder call."""


@dataclass(frozen=True)
class ValConfig:
    """Validation: recall of ground-truth masks by the masks the head's prompts produce."""

    mask_source: Literal["decoder", "box"] = "decoder"
    """decoder: the SAM mask decoder on the prompts (no filters); box: the regressed boxes themselves as masks."""
    iou: UnitInterval = 0.5
    """A ground-truth mask is recalled by a predicted mask with at least this mask IoU."""
    prompt_mode: Literal["box+point", "box", "point"] = "box+point"
    """Prompts given to the decoder."""
    score_thresh: float = 0.3
    """Point-NMS score threshold."""
    nms_radius: float = 1.0
    """Point-NMS radius in output cells."""
    top_n: AtLeastOne = 256
    """Prompts per image."""
    every: AtLeastOne = 1
    """Validate every N epochs (and after the last)."""


@dataclass(frozen=True)
class WorkersConfig:
    """Ray Train workers."""

    num_workers: AtLeastOne = 1
    """Data-parallel workers."""
    use_gpu: bool | None = None
    """One GPU per worker; default: when the cluster has GPUs."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker."""


@dataclass(frozen=True)
class TrainJobConfig:
    """The AutoPPN training job (``python -m jobs.train_autoppn``)."""

    output: str = ""
    """Output folder (local or s3://): autoppn.safetensors, train.json, Ray Train checkpoints; rerun to resume."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    val: ValConfig = field(default_factory=ValConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def validate_train_config(cfg: TrainJobConfig) -> None:
    """Cross-field rules, checked before any work; raises ConfigError naming the field."""
    from pipeline.models import resolve_name

    for key, value in (("output", cfg.output), ("data.train", cfg.data.train), ("data.val", cfg.data.val)):
        if not value:
            raise ConfigError(f"{key} is required")
    try:
        resolve_name(cfg.model.name)
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None
    if cfg.head.out_stride not in (8, 16):
        raise ConfigError(f"head.out_stride must be 8 or 16, got {cfg.head.out_stride}")
