"""Write ``report/`` next to a run's outputs: ``index.html`` (self-contained) and ``overlays/<n>.png``.

Also :func:`render_image`, the overlay of one image id straight from the Parquet output (``python -m jobs.render``).
Cost: one streaming pass over the ``images`` and ``annotations`` parts (a few columns), then the sampled images'
rows (a filtered read) and bytes. An image that cannot be read any more is listed with the reason, not drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, IMAGES, read_table
from pipeline.report.html import Overlay, render_page
from pipeline.report.overlay import OverlayMask, decode_image, draw_overlay, png_bytes
from pipeline.report.stats import RunStats, collect_stats

REPORT = "report"
log = logging.getLogger(__name__)
MASK_COLUMNS = [col.IMAGE_ID, col.RLE_COUNTS, col.BBOX_XYWH, col.CATEGORY_NAME, col.SCORE, col.ANNOTATION_ID]


def image_masks(output_uri: str, storage: StorageConfig, image_ids: Sequence[str]) -> dict[str, list[OverlayMask]]:
    """The masks of ``image_ids`` from ``annotations/``, highest score first (a filtered read of a few columns)."""
    out: dict[str, list[OverlayMask]] = {i: [] for i in image_ids}
    if not image_ids:
        return out
    wanted = pc.field(col.IMAGE_ID).isin(pa.array(list(image_ids), pa.string()))
    table = read_table(output_uri, ANNOTATIONS, storage, columns=MASK_COLUMNS, filter=wanted)
    if table.num_columns == 0:
        return out
    ordered = table.sort_by([(col.IMAGE_ID, "ascending"), (col.SCORE, "descending"), (col.ANNOTATION_ID, "ascending")])
    for row in ordered.to_pylist():
        out[row[col.IMAGE_ID]].append(
            OverlayMask(row[col.RLE_COUNTS], row[col.BBOX_XYWH], f"{row[col.CATEGORY_NAME]} {row[col.SCORE]:.2f}")
        )
    return out


def render_image(output_uri: str, storage: StorageConfig, image_id: str, max_side: int = 1024) -> bytes:
    """PNG of ``image_id`` with its masks, outlines, boxes and categories; ValueError when the run lacks the image."""
    images = read_table(output_uri, IMAGES, storage, columns=[col.IMAGE_ID, col.IMAGE_URI, col.STATUS])
    if images.num_columns == 0:
        raise ValueError(f"{output_uri} holds no labeling output (no images/ parts)")
    rows = images.filter(pc.equal(images[col.IMAGE_ID], image_id)).to_pylist()
    if not rows:
        raise ValueError(f"image id {image_id!r} is not in {output_uri}")
    masks = image_masks(output_uri, storage, [image_id])[image_id]
    return png_bytes(draw_overlay(decode_image(st.read_bytes(rows[0][col.IMAGE_URI], storage)), masks, max_side))


def write_report(output_uri: str, storage: StorageConfig, sample: int, meta: dict[str, str]) -> str:
    """Writes ``report/index.html`` and the overlay PNGs; returns the page's URI."""
    stats = collect_stats(output_uri, storage, sample)
    chosen = _choose(stats, sample)
    masks = image_masks(output_uri, storage, chosen)
    overlays = []
    for n, image_id in enumerate(chosen):
        caption = f"{len(masks[image_id])} masks"
        try:
            image = decode_image(st.read_bytes(stats.image_uris[image_id], storage))
        except (OSError, ValueError) as e:
            overlays.append(Overlay(image_id, f"not drawn: {st.describe_error(e)}", None))
            continue
        png = png_bytes(draw_overlay(image, masks[image_id]))
        st.write_bytes(st.join_uri(output_uri, REPORT, "overlays", f"{n:03d}.png"), png, storage)
        overlays.append(Overlay(image_id, caption, png))
    page_uri = st.join_uri(output_uri, REPORT, "index.html")
    st.write_bytes(page_uri, render_page(stats, overlays, meta).encode("utf-8"), storage)
    return page_uri


def _choose(stats: RunStats, sample: int) -> list[str]:
    """Images to draw: the lowest-confidence, fewest and most first, then the hash sample, ``sample`` in all."""
    chosen: list[str] = []
    for group in (stats.lowest_confidence[:2], stats.fewest[:2], stats.most[:2], stats.sample):
        for image_id, *_ in group:
            if image_id not in chosen and len(chosen) < sample:
                chosen.append(image_id)
    return chosen
