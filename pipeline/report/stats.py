"""Run statistics for the report, streamed part by part over only the Parquet columns they need.

Memory stays bounded by one part file plus the kept extremes: histograms have fixed bins, and the per-image lists
(fewest / most / lowest-confidence masks, and a deterministic hash sample) are bounded heaps. A part file holds
whole images in ``annotations/``, ``errors/`` and ``images/`` alike (the sink names them by their image ids).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, ERRORS, IMAGES, read_part

UNIT_BINS = np.linspace(0.0, 1.0, 21)  # predicted IoU and stability: 0.05 wide, values outside counted at the ends
AREA_BINS = np.logspace(-5, 0, 21)  # mask area as a fraction of the image, log scale
LIST_LENGTH = 5
ANNOTATION_COLUMNS = [
    col.IMAGE_ID,
    col.CATEGORY_NAME,
    col.PREDICTED_IOU,
    col.STABILITY_SCORE,
    col.AREA,
    col.IMAGE_WIDTH,
    col.IMAGE_HEIGHT,
]
IMAGE_COLUMNS = [col.IMAGE_ID, col.IMAGE_URI, col.STATUS, "num_annotations"]


@dataclass
class Histogram:
    edges: np.ndarray
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.edges) - 1, np.int64)

    def add(self, values: np.ndarray) -> None:
        clipped = np.clip(values, self.edges[0], self.edges[-1])
        self.counts += np.histogram(clipped, self.edges)[0]


@dataclass
class RunStats:
    """What the report shows; ``images_*`` lists hold (image id, masks, mean predicted IoU or None)."""

    counts: dict[str, int] = field(default_factory=lambda: {"images": 0, "labeled": 0, "errors": 0, "annotations": 0})
    error_types: Counter = field(default_factory=Counter)
    predicted_iou: Histogram = field(default_factory=lambda: Histogram(UNIT_BINS))
    stability: Histogram = field(default_factory=lambda: Histogram(UNIT_BINS))
    area_fraction: Histogram = field(default_factory=lambda: Histogram(AREA_BINS))
    masks_per_image: Counter = field(default_factory=Counter)
    masks_per_class: Counter = field(default_factory=Counter)
    """Kept masks per category name."""
    fewest: list[tuple] = field(default_factory=list)
    most: list[tuple] = field(default_factory=list)
    lowest_confidence: list[tuple] = field(default_factory=list)
    sample: list[tuple] = field(default_factory=list)
    image_uris: dict[str, str] = field(default_factory=dict)
    """URIs of the images in the lists above (the ones the report may draw)."""


def _parts(output_uri: str, folder: str, storage: StorageConfig) -> list[str]:
    prefix = st.join_uri(output_uri, folder)
    if not st.exists(prefix, storage):
        return []
    return sorted(uri for uri, _ in st.list_files(prefix, storage, recursive=False) if uri.endswith(".parquet"))


def _keep(heap: list, item: tuple, n: int) -> None:
    """Keeps the n largest items of ``heap`` (a min-heap)."""
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif heap and item > heap[0]:
        heapq.heapreplace(heap, item)


def collect_stats(output_uri: str, storage: StorageConfig, sample: int) -> RunStats:
    """Streams ``images/`` and ``annotations/`` part by part into :class:`RunStats`."""
    stats = RunStats()
    heaps: dict[str, list] = {"fewest": [], "most": [], "lowest": [], "sample": []}
    annotation_parts = {uri.rsplit("/", 1)[-1]: uri for uri in _parts(output_uri, ANNOTATIONS, storage)}
    for images_uri in _parts(output_uri, IMAGES, storage):
        images = read_part(images_uri, storage, IMAGE_COLUMNS).to_pylist()
        means = _annotation_part(stats, annotation_parts.get(images_uri.rsplit("/", 1)[-1]), storage)
        for row in images:
            image_id, n = row[col.IMAGE_ID], int(row["num_annotations"] or 0)
            stats.counts["images"] += 1
            if row[col.STATUS] != "labeled":
                stats.counts["errors"] += 1
                continue
            stats.counts["labeled"] += 1
            stats.masks_per_image[n] += 1
            # The URI rides along in the heaps: only the listed images' URIs are ever held.
            entry, uri = (image_id, n, means.get(image_id)), row[col.IMAGE_URI]
            _keep(heaps["fewest"], (-n, _neg(image_id), entry, uri), LIST_LENGTH)
            _keep(heaps["most"], (n, _neg(image_id), entry, uri), LIST_LENGTH)
            if entry[2] is not None:
                _keep(heaps["lowest"], (-entry[2], _neg(image_id), entry, uri), LIST_LENGTH)
            rank = -int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16)
            _keep(heaps["sample"], (rank, 0, entry, uri), sample)
    for uri in _parts(output_uri, ERRORS, storage):
        stats.error_types.update(read_part(uri, storage, ["error_type"])["error_type"].to_pylist())
    stats.counts["annotations"] = int(sum(k * v for k, v in stats.masks_per_image.items()))
    stats.fewest = [e for *_, e, _ in sorted(heaps["fewest"], reverse=True)]
    stats.most = [e for *_, e, _ in sorted(heaps["most"], reverse=True)]
    stats.lowest_confidence = [e for *_, e, _ in sorted(heaps["lowest"], reverse=True)]
    stats.sample = [e for *_, e, _ in sorted(heaps["sample"], reverse=True)]
    stats.image_uris = {entry[0]: uri for heap in heaps.values() for *_, entry, uri in heap}
    return stats


def _neg(text: str) -> tuple[int, ...]:
    """An order key that sorts strings in reverse, so heap ties keep the smallest image ids."""
    return tuple(-ord(c) for c in text)


def _annotation_part(stats: RunStats, uri: str | None, storage: StorageConfig) -> dict[str, float]:
    """Adds one annotations part to the histograms; returns the mean predicted IoU of each of its images."""
    if uri is None:  # a part whose images all had no mask or failed
        return {}
    table = read_part(uri, storage, ANNOTATION_COLUMNS)
    if table.num_rows == 0:
        return {}
    for entry in pc.value_counts(table[col.CATEGORY_NAME]).to_pylist():
        stats.masks_per_class[entry["values"]] += entry["counts"]
    iou = table[col.PREDICTED_IOU].to_numpy(zero_copy_only=False).astype(np.float64)
    stats.predicted_iou.add(iou)
    stats.stability.add(table[col.STABILITY_SCORE].to_numpy(zero_copy_only=False).astype(np.float64))
    pixels = pc.multiply(table[col.IMAGE_WIDTH].cast(pa.float64()), table[col.IMAGE_HEIGHT].cast(pa.float64()))
    stats.area_fraction.add(pc.divide(table[col.AREA].cast(pa.float64()), pixels).to_numpy(zero_copy_only=False))
    grouped = table.group_by(col.IMAGE_ID).aggregate([(col.PREDICTED_IOU, "mean")])
    return dict(zip(grouped[col.IMAGE_ID].to_pylist(), grouped[f"{col.PREDICTED_IOU}_mean"].to_pylist(), strict=True))
