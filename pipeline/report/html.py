"""The report page: one self-contained HTML file (inline SVG charts, overlays as PNG data URIs, no external assets)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.report.stats import Histogram, RunStats

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px} h2{margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:18px} .lists{display:flex;flex-wrap:wrap;gap:28px}
.overlays{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0} figcaption{font-size:12px;color:#555;max-width:512px}
.meta{color:#555;font-size:13px}
"""


@dataclass(frozen=True)
class Overlay:
    image_id: str
    caption: str
    png: bytes | None
    """None when the image could not be read (``caption`` says why)."""


def _svg_histogram(title: str, counts: np.ndarray, labels: Sequence[str], width: int = 360, height: int = 150) -> str:
    top = max(int(counts.max()), 1) if len(counts) else 1
    bar = (width - 40) / max(len(counts), 1)
    bars = []
    for i, n in enumerate(counts):
        h = (height - 40) * int(n) / top
        x, y = 30 + i * bar, height - 25 - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="#4a78b5">'
            f"<title>{html.escape(labels[i])}: {int(n)}</title></rect>"
        )
    axis = (
        f'<text x="30" y="{height - 8}" font-size="10">{html.escape(labels[0].split("–")[0])}</text>'
        f'<text x="{width - 10}" y="{height - 8}" font-size="10" text-anchor="end">'
        f"{html.escape(labels[-1].split('–')[-1])}</text>"
        f'<text x="26" y="18" font-size="10" text-anchor="end">{top}</text>'
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><line x1="30" y1="{height - 25}" x2="{width - 10}" y2="{height - 25}" '
        f'stroke="#888"/>{"".join(bars)}{axis}</svg><figcaption>{html.escape(title)}</figcaption></figure>'
    )


def _edges_labels(hist: Histogram, fmt: str) -> list[str]:
    return [f"{a:{fmt}}–{b:{fmt}}" for a, b in zip(hist.edges[:-1], hist.edges[1:], strict=True)]


def _masks_per_image_chart(stats: RunStats) -> str:
    if not stats.masks_per_image:
        return _svg_histogram("masks per image", np.zeros(1), ["0–0"])
    top = max(stats.masks_per_image)
    width = max(1, int(np.ceil((top + 1) / 30)))  # at most 30 bars
    counts = np.zeros(top // width + 1, np.int64)
    for n, c in stats.masks_per_image.items():
        counts[n // width] += c
    labels = [f"{i * width}–{i * width + width - 1}" if width > 1 else f"{i}–{i}" for i in range(len(counts))]
    return _svg_histogram("masks per image", counts, labels)


def _list_table(title: str, rows: list[tuple]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(i)}</td><td>{n}</td><td>{'–' if s is None else f'{s:.3f}'}</td></tr>"
        for i, n, s in rows
    )
    return (
        f"<div><h3>{html.escape(title)}</h3><table><tr><th>image</th><th>masks</th><th>mean predicted IoU</th></tr>"
        f"{body or '<tr><td colspan=3>none</td></tr>'}</table></div>"
    )


def _overlay(o: Overlay) -> str:
    if o.png is None:
        return f"<figure><figcaption>{html.escape(o.image_id)}: {html.escape(o.caption)}</figcaption></figure>"
    data = base64.b64encode(o.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="overlay of {html.escape(o.image_id)}">'
        f"<figcaption>{html.escape(o.image_id)} · {html.escape(o.caption)}</figcaption></figure>"
    )


def render_page(stats: RunStats, overlays: Sequence[Overlay], meta: dict[str, str]) -> str:
    """The whole page as a string."""
    counts = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in stats.counts.items())
    errors = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in stats.error_types.items())
    classes = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{n}</td></tr>"
        for name, n in sorted(stats.masks_per_class.items(), key=lambda item: (-item[1], str(item[0])))
    )
    charts = [
        _svg_histogram("predicted IoU", stats.predicted_iou.counts, _edges_labels(stats.predicted_iou, ".2f")),
        _svg_histogram("stability score", stats.stability.counts, _edges_labels(stats.stability, ".2f")),
        _svg_histogram(
            "mask area / image area (log)", stats.area_fraction.counts, _edges_labels(stats.area_fraction, ".0e")
        ),
        _masks_per_image_chart(stats),
    ]
    info = " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in meta.items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>samlabel report</title>'
        f"<style>{STYLE}</style></head><body><h1>Labeling report</h1><p class=meta>{info}</p>"
        f'<h2>Counts</h2><table id="counts">{counts}</table>'
        f"{'<h3>errors by type</h3><table>' + errors + '</table>' if errors else ''}"
        f'<h3>masks per class</h3><table id="classes">{classes}</table>'
        f'<h2>Distributions</h2><div class="charts">{"".join(charts)}</div>'
        f'<h2>Images to look at</h2><div class="lists">'
        f"{_list_table('fewest masks', stats.fewest)}{_list_table('most masks', stats.most)}"
        f"{_list_table('lowest confidence', stats.lowest_confidence)}</div>"
        f'<h2>Overlays</h2><div class="overlays" id="overlays">{"".join(_overlay(o) for o in overlays)}</div>'
        f"</body></html>\n"
    )
