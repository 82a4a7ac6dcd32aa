"""The review report written with every run: its content, ``jobs.render``, and a headless-browser screenshot that
shows the overlays (the overlay PNG is found, pixel for pixel, in the screenshot of the page)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from jobs.label import main as label_main
from jobs.render import main as render_main
from pipeline.report.overlay import PALETTE
from tests.e2e.conftest import DATA, FAST_GRID, read_dataset


@pytest.fixture(scope="module")
def run(ray_cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    code = label_main(
        [
            "--input",
            str(DATA),
            "--output",
            str(out),
            "--model",
            "mini-l",
            *FAST_GRID,
            "--set",
            f"ray.address={ray_cluster}",
            "--set",
            "output.report_sample=3",
        ]
    )
    assert code == 0
    return out


def _browser() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_report_page_is_self_contained_and_lists_what_a_reviewer_needs(run):
    page = (run / "report" / "index.html").read_text()
    rows = read_dataset(run / "annotations", ["image_id", "annotation_id"])
    assert f"<th>annotations</th><td>{len(rows)}</td>" in page and "<th>labeled</th><td>4</td>" in page
    assert "<th>images</th><td>4</td>" in page and "<th>errors</th><td>0</td>" in page
    for title in ("predicted IoU", "stability score", "mask area / image area (log)", "masks per image"):
        assert f"<figcaption>{title}</figcaption>" in page
    for title in ("fewest masks", "most masks", "lowest confidence", "masks per class"):
        assert f"<h3>{title}</h3>" in page
    assert f'<table id="classes"><tr><td>object</td><td>{len(rows)}</td></tr></table>' in page  # grid: one class
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 3
    assert not re.search(r'(src|href)="(?!data:)', page)  # no external assets
    assert sorted(p.name for p in (run / "report" / "overlays").iterdir()) == ["000.png", "001.png", "002.png"]


def test_render_draws_any_image_id_from_the_parquet_output(run, tmp_path, capsys):
    out = tmp_path / "coffee.png"
    assert render_main(["--output", str(run), "--image-id", "coffee.jpg", "--out", str(out)]) == 0
    drawn = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert drawn.shape[:2] == (400, 600)
    masks = [r for r in read_dataset(run / "annotations", ["annotation_id"]) if r["image_id"] == "coffee.jpg"]
    present = [c for c in PALETTE if (np.abs(drawn.astype(int) - c).max(-1) == 0).sum() > 20]
    assert masks and len(present) >= min(len(masks), len(PALETTE))  # every mask's outline in its palette colour
    assert render_main(["--output", str(run), "--image-id", "nope.jpg", "--out", str(out)]) == 2
    assert "'nope.jpg' is not in" in capsys.readouterr().err


def test_headless_browser_screenshot_shows_the_overlays(run, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1400,3000",
            f"--screenshot={shot}",
            (run / "report" / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    screen = cv2.imread(str(shot))
    page = (run / "report" / "index.html").read_text()
    first = base64.b64decode(re.search(r'<img src="data:image/png;base64,([^"]+)"', page).group(1))
    overlay = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    score = cv2.matchTemplate(screen, overlay, cv2.TM_SQDIFF_NORMED)
    assert score.min() < 0.01  # the overlay is on screen, as embedded
    y, x = np.unravel_index(score.argmin(), score.shape)
    shown = cv2.cvtColor(screen[y : y + overlay.shape[0], x : x + overlay.shape[1]], cv2.COLOR_BGR2RGB)
    assert any((np.abs(shown.astype(int) - c).max(-1) <= 3).sum() > 20 for c in PALETTE)  # with its outlines
