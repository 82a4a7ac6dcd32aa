"""The commit at bucket scale: synthetic finished parts for N images × K masks, then the commit exactly as a user's
rerun of the finished run triggers it (``samlabel label`` finds every image done and commits), in a fresh process
per N so that its peak resident memory is the driver's.

Parts are what the sink writes (``annotations``, ``images``, one part per ``images_per_part`` images), with COCO RLE
strings of real masks (random ellipses at 640×480, so their length is a photo's, not a toy's).
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools import mask as mask_utils

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, IMAGES, part_name
from pipeline.io.tables import ANNOTATIONS_SCHEMA, IMAGES_SCHEMA

IMAGE_HW = (480, 640)
RLE_POOL = 256


def rle_pool(count: int = RLE_POOL, seed: int = 0) -> list[str]:
    """COCO compressed RLE strings of ``count`` random ellipses at 640×480."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: IMAGE_HW[0], : IMAGE_HW[1]]
    out = []
    for _ in range(count):
        cy, cx = rng.uniform(0, IMAGE_HW[0]), rng.uniform(0, IMAGE_HW[1])
        ry, rx = rng.uniform(5, 120, size=2)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        out.append(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode())
    return out


def image_ids(images: int) -> list[str]:
    return [f"shard-{i // 1000:05d}/img-{i:08d}.jpg" for i in range(images)]


def write_synthetic_parts(
    output_uri: str, storage: StorageConfig, ids: list[str], masks: int, images_per_part: int, first: int = 0
) -> None:
    """Finished parts for ``ids`` with ``masks`` masks each; ``first`` is the global index of ``ids[0]``."""
    pool = np.array(rle_pool(), dtype=object)
    for start in range(0, len(ids), images_per_part):
        chunk = ids[start : start + images_per_part]
        index = np.arange(first + start, first + start + len(chunk), dtype=np.int64)
        annotations, images = _part_tables(chunk, index, masks, pool)
        name = part_name(chunk)
        st.write_bytes(st.join_uri(output_uri, ANNOTATIONS, name), _parquet(annotations), storage)
        st.write_bytes(st.join_uri(output_uri, IMAGES, name), _parquet(images), storage)


def _part_tables(ids: list[str], index: np.ndarray, masks: int, pool: np.ndarray) -> tuple[pa.Table, pa.Table]:
    n, h, w = len(ids), IMAGE_HW[0], IMAGE_HW[1]
    per_image = np.repeat(np.arange(n), masks)
    flat = n * masks
    mask_index = np.tile(np.arange(masks), n)
    rles = pool[(index[per_image] * 7 + mask_index) % len(pool)]
    boxes = pa.FixedSizeListArray.from_arrays(pa.array(np.tile([1.0, 2.0, 30.0, 40.0], flat), pa.float32()), 4)
    uris = [i if "://" in i else f"s3://bucket/{i}" for i in ids]  # a manifest's ids are its URIs
    scores = pa.array(np.linspace(0.5, 1.0, flat, dtype=np.float32))
    annotations = pa.table(
        {
            col.IMAGE_ID: pa.array(ids).take(pa.array(per_image)),
            col.IMAGE_URI: pa.array(uris).take(pa.array(per_image)),
            col.COCO_IMAGE_ID: pa.array(index + 1).take(pa.array(per_image)),
            col.IMAGE_WIDTH: pa.array(np.full(flat, w, np.int32)),
            col.IMAGE_HEIGHT: pa.array(np.full(flat, h, np.int32)),
            col.ANNOTATION_ID: pa.array(
                (index[per_image] * masks + np.tile(np.arange(masks), n) + 1).astype(np.int64)
            ),
            col.CATEGORY_ID: pa.array(np.ones(flat, np.int64)),
            col.CATEGORY_NAME: pa.array(["object"] * flat),
            col.BBOX_XYWH: boxes,
            col.AREA: pa.array(np.full(flat, 1200, np.int64)),
            col.RLE_COUNTS: pa.array(rles, pa.string()),
            col.PREDICTED_IOU: scores,
            col.STABILITY_SCORE: scores,
            col.SCORE: scores,
            col.CLASS_SCORE: pa.nulls(flat, pa.float32()),
            col.PROMPT_TYPE: pa.array(["grid"] * flat),
            col.PROMPT_BOX_XYXY: pa.nulls(flat, ANNOTATIONS_SCHEMA.field(col.PROMPT_BOX_XYXY).type),
            col.PROMPT_POINTS: pa.nulls(flat, ANNOTATIONS_SCHEMA.field(col.PROMPT_POINTS).type),
            col.MODEL: pa.array(["mini-l"] * flat),
            col.RUN_ID: pa.array(["scale"] * flat),
        },
        schema=ANNOTATIONS_SCHEMA,
    )
    images = pa.table(
        {
            col.IMAGE_ID: ids,
            col.IMAGE_URI: uris,
            col.COCO_IMAGE_ID: index + 1,
            col.IMAGE_WIDTH: np.full(n, w, np.int32),
            col.IMAGE_HEIGHT: np.full(n, h, np.int32),
            col.STATUS: ["labeled"] * n,
            "num_annotations": np.full(n, masks, np.int64),
            col.PROMPTS_DROPPED: np.zeros(n, np.int64),
            col.MASKS_DROPPED: np.zeros(n, np.int64),
            col.MASKS_UNNAMED: np.zeros(n, np.int64),
            col.RUN_ID: ["scale"] * n,
        },
        schema=IMAGES_SCHEMA,
    )
    return annotations, images


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def measure_commit(folder: Path, images: int, masks: int, images_per_part: int, coco_max_images: int) -> dict:
    """Builds a finished run of ``images`` × ``masks`` under ``folder`` and commits it in a fresh process, as
    ``samlabel label`` does when it reruns a finished run; returns seconds, peak RSS and output sizes."""
    manifest, output = folder / "manifest.parquet", folder / "out"
    ids = image_ids(images)
    pq.write_table(pa.table({"image_uri": [f"s3://bucket/{i}" for i in ids]}), manifest)
    start = time.perf_counter()
    child = [sys.executable, "-m", "pipeline.bench.scale", str(manifest), str(output), str(masks)]
    child += [str(images_per_part), str(coco_max_images)]
    done = subprocess.run(child, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scale commit failed: {done.stderr.strip().splitlines()[-1:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    coco = sorted(output.glob("coco.json")) + sorted((output / "coco").glob("*.json"))
    return {
        "images": images,
        "masks": images * masks,
        "write_parts_seconds": report["write_parts_seconds"],
        "commit_seconds": report["commit_seconds"],
        "rerun_seconds": report["rerun_seconds"],
        "peak_rss_mb": report["peak_rss_mb"],
        "rss_before_commit_mb": report["rss_before_commit_mb"],
        "parts_mb": round(sum(p.stat().st_size for p in (output / ANNOTATIONS).iterdir()) / 2**20, 1),
        "coco_mb": round(sum(p.stat().st_size for p in coco) / 2**20, 1),
        "coco_files": len(coco),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def _child(manifest: str, output: str, masks: int, images_per_part: int, coco_max_images: int) -> None:
    """The user's side: prepare and open the run, the parts appear (the finished attempt), the rerun commits."""
    from pipeline.config.loading import load_config
    from pipeline.config.sections import LabelConfig
    from pipeline.labeling.output import open_output
    from pipeline.labeling.prepare import prepare_labeling
    from pipeline.labeling.run import label_output

    overrides = [
        f"input.uri={manifest}",
        f"output.uri={output}",
        "model.name=mini-l",
        "ray.num_cpus=2",
        "ray.progress=false",
        f"output.images_per_part={images_per_part}",
        f"output.coco_max_images={coco_max_images}",
        "output.report=true",
    ]
    cfg = load_config(LabelConfig, None, overrides)
    labeling = prepare_labeling(cfg)
    open_output(labeling, output)
    start = time.perf_counter()
    ids = labeling.plan.table[col.IMAGE_ID].to_pylist()
    write_synthetic_parts(output, cfg.storage, ids, masks, images_per_part)
    del ids
    written = time.perf_counter() - start
    before = _peak_rss_mb()
    opened = open_output(labeling, output)  # the rerun: every image is done
    start = time.perf_counter()
    result = label_output(labeling, opened, labeling.plan.table, started_at=start)
    report = {
        "write_parts_seconds": round(written, 1),
        "rerun_seconds": round(time.perf_counter() - start, 1),
        "commit_seconds": result.timings["commit_seconds"],
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_commit_mb": before,
        "counts": result.counts,
    }
    print(json.dumps(report))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
