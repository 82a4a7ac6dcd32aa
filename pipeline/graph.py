"""The labeling dataset: the one place where operators become Ray Data ``map_batches`` stages.

input rows ─► read + decode (CPU tasks) ─► segment (actor per GPU, or CPU) ─► records (CPU) ─► sink
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from operators.decode import decode_images
from operators.read import read_images
from operators.records import to_records
from operators.segment import Segment
from pipeline.config import LabelConfig
from pipeline.models import model_card


@dataclass(frozen=True)
class SegmentResources:
    actors: int
    num_gpus: float
    num_cpus: float


def segment_resources(cfg: LabelConfig, cluster: dict[str, float]) -> SegmentResources:
    """One actor per GPU when the cluster has GPUs, else one CPU actor using all CPUs but one."""
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    num_gpus = cfg.segment.num_gpus if cfg.segment.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    actors = cfg.segment.actors or (max(1, int(gpus // num_gpus)) if num_gpus > 0 else 1)
    num_cpus = cfg.segment.num_cpus or (2.0 if num_gpus > 0 else max(1.0, cpus - 1))
    return SegmentResources(actors, num_gpus, min(num_cpus, cpus))


def build_label_dataset(
    cfg: LabelConfig, inputs: pa.Table, *, run_id: str, categories: list[dict], resources: SegmentResources
) -> Dataset:
    rows_per_block = max(cfg.decode.batch_size, 1)
    blocks = [inputs.slice(i, rows_per_block) for i in range(0, inputs.num_rows, rows_per_block)]
    ds = ray.data.from_arrow(blocks)
    # CPU tasks: fetch bytes, then decode and resize to the encoder input (fused by Ray into one task).
    ds = ds.map_batches(
        read_images,
        fn_kwargs={"storage": cfg.storage, "max_file_bytes": cfg.decode.max_file_bytes},
        batch_size=cfg.decode.batch_size,
        num_cpus=cfg.decode.num_cpus,
    )
    long_side = model_card(cfg.model.name).encoder_input_size
    keep_original = cfg.prompts.mode == "grid" and cfg.grid.crop_n_layers > 0
    ds = ds.map_batches(
        decode_images,
        fn_kwargs={"cfg": cfg.decode, "long_side": long_side, "keep_original": keep_original},
        batch_size=cfg.decode.batch_size,
        num_cpus=cfg.decode.num_cpus,
    )
    # GPU actor (logical on CPU machines): encoder → prompts → mask decoder → filter → RLE.
    segment_kwargs = {
        "model": cfg.model,
        "mode": cfg.prompts.mode,
        "grid": cfg.grid,
        "boxes": cfg.boxes,
        "storage": cfg.storage,
        "decoder_chunk": cfg.segment.decoder_chunk,
        "num_threads": cfg.segment.threads or (max(1, int(resources.num_cpus)) if resources.num_gpus > 0 else None),
        "max_masks": cfg.segment.max_masks_per_image,
    }
    ds = ds.map_batches(
        Segment,
        fn_constructor_kwargs=segment_kwargs,
        batch_size=cfg.segment.batch_size,
        num_gpus=resources.num_gpus,
        num_cpus=resources.num_cpus,
        compute=ActorPoolStrategy(size=resources.actors),
    )
    # CPU: output columns and ids.
    records_kwargs = {
        "run_id": run_id,
        "model_name": cfg.model.name,
        "prompt_type": cfg.prompts.mode,
        "categories": {c["id"]: c["name"] for c in categories},
    }
    return ds.map_batches(to_records, fn_kwargs=records_kwargs, batch_size=None, num_cpus=0.25)


def init_ray(cfg: LabelConfig) -> None:
    """Connects to ``ray.address`` / RAY_ADDRESS (set by ``ray job submit``), else starts a local Ray."""
    import os

    from ray.data import DataContext

    if not ray.is_initialized():
        address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus, include_dashboard=False)
    context = DataContext.get_current()
    context.enable_progress_bars = cfg.ray.progress
    context.enable_operator_progress_bars = cfg.ray.progress
