"""The labeling dataset: the one place where operators become Ray Data ``map_batches`` stages.

input rows ─► read + decode (CPU tasks) ─► [detect: YOLO or text detector actor] ─► segment (actor per GPU, or CPU;
           names the masks when a classifier is set) ─► records (CPU) ─► sink

With yolo or text prompts a GPU holds one detect actor (``DETECT_GPU_SHARE``) and one segment actor (the rest), so both
stages stream side by side on every GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from operators.decode import decode_images
from operators.detect import Detect
from operators.detect_text import DetectText
from operators.read import read_images
from operators.records import to_records
from operators.segment import Segment, SegmentPrompts
from pipeline.config.sections import ConfigError, LabelConfig, RayConfig
from pipeline.models import model_card

DETECT_GPU_SHARE = 0.25
DETECTOR_MODES = ("yolo", "text")
# Share of the cluster Ray Data reserves, split evenly, for its operators. At Ray's 0.5 the write stage's reservation
# sits idle while decode tasks, which must feed every GPU, get only their even share (docs/performance.md, "Feeding
# the GPUs"); the segment actors' reservation is their own minimum either way.
RESERVATION_RATIO = 0.75


@dataclass(frozen=True)
class SegmentResources:
    actors: int
    num_gpus: float
    num_cpus: float
    batch_size: int = 1
    """Images per actor call."""


def segment_resources(cfg: LabelConfig, cluster: dict[str, float]) -> SegmentResources:
    """One actor per GPU when the cluster has GPUs, else one CPU actor using all CPUs but one."""
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    whole = 1.0 - DETECT_GPU_SHARE if cfg.prompts.mode in DETECTOR_MODES else 1.0
    num_gpus = cfg.segment.num_gpus if cfg.segment.num_gpus is not None else (whole if gpus >= 1 else 0.0)
    actors = cfg.segment.actors or (max(1, int(gpus // max(num_gpus, whole))) if num_gpus > 0 else 1)
    spare = 2.0 if cfg.prompts.mode in DETECTOR_MODES else 1.0  # the decode tasks, and the detect actor
    num_cpus = cfg.segment.num_cpus or (2.0 if num_gpus > 0 else max(1.0, cpus - spare))
    batch_size = cfg.segment.images_per_call(gpu=num_gpus > 0)
    if cfg.decode.device == "cuda" and num_gpus <= 0:
        raise ConfigError("decode.device=cuda decodes JPEGs on the segment actors' GPUs, but the cluster has no GPU")
    return SegmentResources(actors, num_gpus, min(num_cpus, cpus), batch_size)


def detect_resources(cfg: LabelConfig, cluster: dict[str, float]) -> SegmentResources:
    """With GPUs, one detect actor per GPU on a quarter of it; without, one CPU actor on one CPU."""
    gpus = cluster.get("GPU", 0.0)
    section = cfg.text if cfg.prompts.mode == "text" else cfg.yolo
    num_gpus = section.num_gpus if section.num_gpus is not None else (DETECT_GPU_SHARE if gpus >= 1 else 0.0)
    actors = section.actors or (max(1, int(gpus)) if num_gpus > 0 else 1)
    return SegmentResources(actors, num_gpus, 1.0)


def build_label_dataset(
    cfg: LabelConfig,
    inputs: pa.Table,
    *,
    run_id: str,
    categories: list[dict],
    resources: SegmentResources,
    decode_fn: Callable[..., dict] = decode_images,
    segment_actor: type = Segment,
) -> Dataset:
    """The labeling graph over ``inputs`` (image_id, image_uri, ...). ``decode_fn`` and ``segment_actor`` are the
    decode function and segment actor class (stand-ins with a set cost in the feeding check)."""
    # A segment task's output reaches the sink when the task ends: blocks of at most one part keep the images
    # a crash loses to the tasks in flight and one part being gathered.
    rows_per_block = max(1, min(cfg.decode.batch_size, cfg.output.images_per_part))
    blocks = [inputs.slice(i, rows_per_block) for i in range(0, inputs.num_rows, rows_per_block)]
    ds = ray.data.from_arrow(blocks)
    # CPU tasks: fetch bytes, then decode and resize to the encoder input (fused by Ray into one task).
    ds = ds.map_batches(
        read_images,
        fn_kwargs={"storage": cfg.storage, "max_file_bytes": cfg.decode.max_file_bytes},
        batch_size=rows_per_block,
        num_cpus=cfg.decode.num_cpus,
    )
    long_side = model_card(cfg.model.name).encoder_input_size
    keep_original = cfg.prompts.mode == "grid" and cfg.grid.crop_n_layers > 0
    # The detector gets its own copy at its input size (never enlarged) unless the encoder's copy is the same.
    detect_side = cfg.yolo.imgsz if cfg.prompts.mode == "yolo" else None
    ds = ds.map_batches(
        decode_fn,
        fn_kwargs={
            "cfg": cfg.decode,
            "long_side": long_side,
            "keep_original": keep_original,
            "detect_side": detect_side,
        },
        batch_size=rows_per_block,
        num_cpus=cfg.decode.num_cpus,
    )
    if cfg.prompts.mode in DETECTOR_MODES:
        detect = detect_resources(cfg, ray.cluster_resources())
        yolo = cfg.prompts.mode == "yolo"
        ds = ds.map_batches(
            Detect if yolo else DetectText,
            fn_constructor_kwargs={
                **({"yolo": cfg.yolo} if yolo else {"text": cfg.text}),
                "storage": cfg.storage,
                "device": cfg.model.device,
                "cache_dir": cfg.model.cache_dir,
            },
            batch_size=cfg.yolo.batch_size if yolo else cfg.text.batch_size,
            num_gpus=detect.num_gpus,
            num_cpus=detect.num_cpus,
            compute=ActorPoolStrategy(size=detect.actors),
        )
    # GPU actor (logical on CPU machines): encoder → prompts → mask decoder → filter → RLE.
    threads = cfg.segment.threads or (max(1, int(resources.num_cpus)) if resources.num_gpus > 0 else None)
    segment_args = (cfg.model, SegmentPrompts.of(cfg), cfg.segment, cfg.storage, threads, cfg.decode, cfg.classify)
    ds = ds.map_batches(
        segment_actor,
        fn_constructor_args=segment_args,
        batch_size=resources.batch_size,
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


def init_ray(ray_cfg: RayConfig) -> None:
    """Connects to ``ray_cfg.address`` / RAY_ADDRESS (set by ``ray job submit``), else starts a local Ray with
    ``num_cpus`` / ``num_gpus``; sets Ray Data's progress bars from ``progress``. Does nothing to a Ray already up."""
    import os

    from ray.data import DataContext

    if not ray.is_initialized():
        address = ray_cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=ray_cfg.num_cpus, num_gpus=ray_cfg.num_gpus, include_dashboard=False)
    context = DataContext.get_current()
    context.enable_progress_bars = ray_cfg.progress
    context.enable_operator_progress_bars = ray_cfg.progress
    context.op_resource_reservation_ratio = RESERVATION_RATIO
