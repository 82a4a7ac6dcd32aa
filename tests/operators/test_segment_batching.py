"""Results do not depend on batching: every output column of the segment operator (masks as exact RLE, scores,
boxes, prompt indices) is identical whatever the decoder chunk, grid points per call and images per call are, in
grid, box and AutoPPN modes (fp32; CI also runs this with AVX2 kernels)."""

from __future__ import annotations

import numpy as np
import pytest

from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.config.sections import AutoPPNConfig, BoxesConfig, GridConfig, ModelConfig, SegmentConfig, StorageConfig
from tests.fixtures import decoded_batch, fixture_images, write_fixture_weights, write_random_autoppn_head

# The fixture model's predicted IoUs lie near 0.0-0.2: thresholds that keep some masks and drop others, so that the
# kept set of each decoder group varies with batching.
OPEN = {"stability_score_thresh": 0.0, "box_nms_thresh": 0.9, "max_mask_area_frac": 1.0}
BOXES = [[[50, 40, 300, 250], [10, 10, 120, 90], [200, 150, 480, 320]], [[100, 200, 600, 900]], [[0, 0, 60, 40]]]
# (decoder chunk, grid points per call, images per call)
BATCHINGS = [(64, 64, 3), (5, 24, 1), (3, 9, 2)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batching")
    return write_fixture_weights(folder / "sam.pt", "l"), write_random_autoppn_head(folder / "head.safetensors")


def _batch() -> dict[str, np.ndarray]:
    images = fixture_images()
    names = ["img0", "img1", "img2"]
    batch = decoded_batch([images[n] for n in names], names, 512)
    batch[col.PROMPT_BOXES_XYXY] = col.object_column([np.ravel(b) for b in BOXES])
    return batch


def _run(weights, mode: str, chunk: int, points_per_batch: int, images_per_call: int) -> dict[str, list]:
    sam, head = weights
    model = ModelConfig(name="mini-l", weights=str(sam), precision="fp32", decoder_precision="fp32")
    grid = GridConfig(points_per_side=6, points_per_batch=points_per_batch, pred_iou_thresh=0.15, **OPEN)
    autoppn = AutoPPNConfig(weights=str(head), top_n=16, pred_iou_thresh=0.01, **OPEN)
    boxes = BoxesConfig(pred_iou_thresh=0.08)
    prompts = SegmentPrompts(mode, grid=grid, boxes=boxes, autoppn=autoppn)
    segment = Segment(model, prompts, SegmentConfig(decoder_chunk=chunk), StorageConfig())
    batch, out = _batch(), {}
    for start in range(0, 3, images_per_call):
        part = segment({key: value[start : start + images_per_call] for key, value in batch.items()})
        for key, value in part.items():
            out.setdefault(key, []).extend(_plain(v) for v in value)
    return out


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value] if value.dtype == object else value.tolist()
    return value


@pytest.mark.parametrize("mode", ["grid", "boxes", "autoppn"])
def test_outputs_are_identical_whatever_the_batching(weights, mode: str) -> None:
    expected = _run(weights, mode, *BATCHINGS[0])
    kept = sum(len(v) for v in expected[col.MASK_RLE_COUNTS])
    assert kept > 0 and (mode == "boxes" or kept < 3 * 16)  # something kept, something dropped
    for batching in BATCHINGS[1:]:
        ours = _run(weights, mode, *batching)
        assert ours.keys() == expected.keys()
        for key in expected:
            if key.startswith("seconds_"):  # timings
                continue
            assert ours[key] == expected[key], f"{key} differs with decoder chunk, points per call, images {batching}"


@pytest.mark.parametrize("mode", ["grid", "boxes", "autoppn"])
def test_masks_encoded_on_the_device_equal_the_host_encoding(weights, mode: str, monkeypatch) -> None:
    """The GPU's way (runs, areas and boxes computed by torch where the masks are, one side stream per device)
    taken on the CPU: every output column equals pycocotools' encoding of host masks."""
    from pipeline.segment import rle

    expected = _run(weights, mode, *BATCHINGS[0])
    monkeypatch.setattr(rle, "ON_DEVICE_TYPES", frozenset({"cpu"}))
    ours = _run(weights, mode, *BATCHINGS[0])
    assert sum(len(v) for v in ours[col.MASK_RLE_COUNTS]) > 0
    for key in expected:
        if not key.startswith("seconds_"):
            assert ours[key] == expected[key], f"{key} differs when masks are RL-encoded with torch"
