"""The segment operator called directly (no Ray) with the fixture models and weights from a checkpoint file.

Box prompts: every box gives one mask equal to the official predictor's best-of-3 mask (mask IoU >= 0.99 on CPU
fp32) with the same predicted IoU (1e-3), prompts of several images share decoder calls, errored rows pass
through, and a failing image becomes an error row while the rest of the batch is labeled.
"""

import numpy as np
import pytest

from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.config.sections import BoxesConfig, GridConfig, ModelConfig, SegmentConfig, StorageConfig
from pipeline.segment.masks import decode_rle, mask_iou
from pipeline.segment.reference import ReferencePredictor
from tests.fixtures import decoded_batch, fixture_images, fixture_model, write_fixture_weights

BOXES = {
    "img0": [[50, 40, 300, 250], [10, 10, 120, 90], [200, 150, 480, 320]],
    "img1": [[100, 200, 600, 900], [0, 0, 733, 1100]],
}


@pytest.fixture(scope="module", params=["l", "xl"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def segment(arch, tmp_path_factory):
    weights = write_fixture_weights(tmp_path_factory.mktemp("w") / f"mini_{arch}.pt", arch)
    # fp32: the official outputs (the default, precision auto, may pick a gated bf16 on this CPU).
    model = ModelConfig(name=f"mini-{arch}", weights=str(weights), precision="fp32", decoder_precision="fp32")
    return Segment(model, SegmentPrompts("boxes"), SegmentConfig(decoder_chunk=2), StorageConfig())


def _batch(arch):
    images = fixture_images()
    batch = decoded_batch([images["img0"], images["img1"]], ["img0", "img1"], 512 if arch == "l" else 1024)
    batch[col.PROMPT_BOXES_XYXY] = col.object_column([np.ravel(BOXES["img0"]), np.ravel(BOXES["img1"])])
    return batch


def test_box_masks_match_the_official_predictor(arch, segment):
    out = segment(_batch(arch))
    predictor = ReferencePredictor(fixture_model(arch))
    images = fixture_images()
    for row, name in enumerate(["img0", "img1"]):
        predictor.set_image(images[name])
        assert list(out[col.MASK_PROMPT_INDEX][row]) == list(range(len(BOXES[name])))
        for k, box in enumerate(BOXES[name]):
            masks, iou, _ = predictor.predict(box=np.array(box, np.float32), multimask_output=True)
            best = int(np.argmax(iou))
            size = list(images[name].shape[:2])
            ours = decode_rle({"size": size, "counts": out[col.MASK_RLE_COUNTS][row][k]})
            assert mask_iou(ours, masks[best]) >= 0.99
            assert abs(out[col.MASK_PREDICTED_IOU][row][k] - iou[best]) <= 1e-3
            assert out[col.MASK_AREA][row][k] == ours.sum()
            # The fast decoder rounds differently (~1e-6): near-zero random-weight logits may flip a pixel.
            assert abs(int(ours.sum()) - int(masks[best].sum())) <= 1e-3 * masks[best].sum()
    assert col.IMAGE_RGB not in out


def test_error_rows_pass_through_and_failures_are_isolated(arch, segment):
    batch = _batch(arch)
    batch[col.ERROR_STAGE][0] = "decode"
    batch[col.ERROR_TYPE][0] = "truncated"
    out = segment(batch)
    assert list(out[col.MASK_RLE_COUNTS][0]) == [] and out[col.ERROR_TYPE][0] == "truncated"
    assert len(out[col.MASK_RLE_COUNTS][1]) == len(BOXES["img1"])

    broken = _batch(arch)
    broken[col.IMAGE_RGB][0] = b"\x00" * 10  # wrong size for its declared shape
    out = segment(broken)
    assert out[col.ERROR_STAGE][0] == "segment" and out[col.ERROR_MESSAGE][0]
    assert out[col.ERROR_STAGE][1] is None and len(out[col.MASK_RLE_COUNTS][1]) == len(BOXES["img1"])


def test_thresholds_drop_masks(arch, tmp_path):
    weights = write_fixture_weights(tmp_path / "w.pt", arch)
    strict = Segment(
        ModelConfig(name=f"mini-{arch}", weights=str(weights)),
        SegmentPrompts("boxes", boxes=BoxesConfig(pred_iou_thresh=0.99)),
        SegmentConfig(decoder_chunk=8),
        StorageConfig(),
    )
    out = strict(_batch(arch))
    assert all(len(v) == 0 for v in out[col.MASK_RLE_COUNTS])  # random weights never predict IoU > 0.99


def test_grid_mode_with_crop_layers(tmp_path):
    weights = write_fixture_weights(tmp_path / "w.pt", "l")
    grid = GridConfig(
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        crop_n_layers=1,
        box_nms_thresh=1.0,
        crop_nms_thresh=1.0,
        max_mask_area_frac=1.0,
    )
    segment = Segment(
        ModelConfig(name="mini-l", weights=str(weights)),
        SegmentPrompts("grid", grid=grid),
        SegmentConfig(decoder_chunk=16),
        StorageConfig(),
    )
    images = fixture_images()
    batch = decoded_batch([images["img0"], images["img2"]], ["a", "b"], 512)
    missing_originals = segment(dict(batch))
    assert missing_originals[col.ERROR_STAGE].tolist() == ["segment", "segment"]
    assert "originals" in missing_originals[col.ERROR_MESSAGE][0]
    batch[col.IMAGE_ORIGINAL_RGB] = col.object_column([images["img0"].tobytes(), images["img2"].tobytes()])
    out = segment(batch)
    assert col.IMAGE_ORIGINAL_RGB not in out
    for row, name in enumerate(["img0", "img2"]):
        assert out[col.ERROR_STAGE][row] is None and len(out[col.MASK_RLE_COUNTS][row]) >= 16
        size = list(images[name].shape[:2])
        for counts, area, points in zip(
            out[col.MASK_RLE_COUNTS][row], out[col.MASK_AREA][row], out[col.MASK_PROMPT_POINTS][row], strict=True
        ):
            assert decode_rle({"size": size, "counts": counts}).sum() == area
            assert len(points) == 1 and 0 <= points[0][0] < size[1] and 0 <= points[0][1] < size[0]
