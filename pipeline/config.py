"""Typed, strict job configuration: dataclass defaults < YAML file < command line (``--set section.key=value``).

Every field has a one-line docstring; closed choices are ``Literal``. Operators receive only their own section.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageConfig:
    """How to reach object storage. Credentials come from the standard AWS chain (env, profile, instance role)."""

    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (e.g. http://minio:9000); default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS."""
    s3_region: str | None = None
    """Region; default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1."""
    s3_anonymous: bool = False
    """Unsigned requests (public buckets)."""
    max_attempts: int = 10
    """Attempts per storage request, with exponential backoff, before a read or write fails."""


@dataclass(frozen=True)
class DecodeConfig:
    """Reading and decoding images on CPU tasks."""

    max_file_bytes: int = 256 * 1024 * 1024
    """Larger files are recorded in errors/ as too_large without being read."""
    max_pixels: int = 100_000_000
    """Images whose declared width×height exceeds this are recorded as too_large without being decoded."""
    batch_size: int = 16
    """Images per read/decode task."""
    num_cpus: float = 1.0
    """CPUs reserved per decode task."""


@dataclass(frozen=True)
class GridConfig:
    """Segment-everything prompts: SAM's automatic mask generator semantics, filtered on low-res logits."""

    points_per_side: int = 32
    """Grid points per side on the full image (crop layer n uses points_per_side / downscale_factor**n)."""
    points_per_batch: int = 64
    """Point prompts per decoder call (shared across images)."""
    pred_iou_thresh: float = 0.88
    """Keep masks whose predicted IoU is strictly above this."""
    stability_score_thresh: float = 0.95
    """Keep masks whose stability score is at least this."""
    stability_score_offset: float = 1.0
    """Logit offset for the stability score."""
    box_nms_thresh: float = 0.7
    """Box IoU for non-maximum suppression within a crop."""
    crop_n_layers: int = 0
    """Extra layers of image crops (0 = whole image only)."""
    crop_nms_thresh: float = 0.7
    """Box IoU for non-maximum suppression across crops."""
    crop_overlap_ratio: float = 512 / 1500
    """Overlap of neighbouring crops, as a fraction of the image side."""
    crop_n_points_downscale_factor: int = 1
    """Points per side are divided by this factor in each further crop layer."""
    min_mask_region_area: int = 0
    """Remove islands and holes smaller than this many pixels (0 = off)."""
    max_mask_area_frac: float = 0.95
    """Drop masks covering more than this fraction of the image (SA-1B drops near-full-image masks)."""
