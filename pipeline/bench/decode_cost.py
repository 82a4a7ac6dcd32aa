"""What feeding a GPU costs on the CPU: core-milliseconds per image of the decode stage (the decode operator as the
labeling job runs it: open, header checks, decode, EXIF, RGB, resize to the encoder's input) for COCO-size JPEGs,
12 MP JPEGs and large PNGs, and the CPU cores one GPU needs at a given images/s.

Core time is the process's CPU time (user + system) per image with one compute thread, so it does not depend on how
many cores the machine has; cores per GPU = images/s × core-seconds per image.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from operators.decode import decode_images
from pipeline.bench.data import photo_like
from pipeline.config.sections import DecodeConfig
from pipeline.schema import IMAGE_BYTES, IMAGE_ID


@dataclass(frozen=True)
class ImageKind:
    name: str
    height: int
    width: int
    format: str


KINDS = (
    ImageKind("COCO-size JPEG 640x480", 480, 640, "JPEG"),
    ImageKind("12 MP JPEG 4000x3000", 3000, 4000, "JPEG"),
    ImageKind("large PNG 4000x3000", 3000, 4000, "PNG"),
)


def encoded(kind: ImageKind, seed: int) -> bytes:
    """A photo-like image of ``kind``, encoded (JPEG quality 90, PNG default compression)."""
    buffer = io.BytesIO()
    Image.fromarray(photo_like(kind.height, kind.width, seed)).save(buffer, kind.format, quality=90)
    return buffer.getvalue()


def decode_cost(kind: ImageKind, images: int, long_side: int, repeats: int = 3) -> dict:
    """Core-ms and wall-ms per image of the decode operator on ``images`` files of ``kind``, the best of
    ``repeats`` passes (the least disturbed by other work on the machine)."""
    files = [encoded(kind, seed) for seed in range(images)]
    batch = {IMAGE_ID: np.array([str(i) for i in range(images)], object), IMAGE_BYTES: np.array(files, object)}
    cfg = DecodeConfig()
    decode_images(batch, cfg, long_side)  # imports and first-call work out of the timing
    core, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        out = decode_images(batch, cfg, long_side)
        core.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    if any(out["error_type"]):
        raise RuntimeError(f"decoding generated {kind.name} files failed: {set(out['error_message'])}")
    return {
        "kind": kind.name,
        "images": images,
        "file_kb": round(sum(map(len, files)) / images / 1024, 1),
        "core_ms_per_image": round(1000 * min(core) / images, 2),
        "wall_ms_per_image": round(1000 * min(wall) / images, 2),
    }


def cores_per_gpu(core_ms_per_image: float, images_per_second: float) -> float:
    """CPU cores that decode ``images_per_second`` at ``core_ms_per_image``."""
    return core_ms_per_image * images_per_second / 1000.0


def format_decode_cost(rows: list[dict], rates: list[float]) -> str:
    header = f"{'image':<26}{'KB/file':>9}{'core-ms/img':>13}" + "".join(f"{f'cores @{r:g}/s':>15}" for r in rates)
    lines = [header]
    for r in rows:
        cores = "".join(f"{cores_per_gpu(r['core_ms_per_image'], rate):>15.1f}" for rate in rates)
        lines.append(f"{r['kind']:<26}{r['file_kb']:>9.0f}{r['core_ms_per_image']:>13.2f}{cores}")
    return "\n".join(lines)
