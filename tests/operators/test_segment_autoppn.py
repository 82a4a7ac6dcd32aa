"""The segment operator in autoppn mode: the head runs on the actor's embedding, its prompts are decoded in shared
calls and the masks go through grid mode's filters; prompt modes, top-N and the filters change what comes out."""

import numpy as np
import pytest

from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.config.sections import AutoPPNConfig, ModelConfig, SegmentConfig, StorageConfig
from pipeline.segment.masks import decode_rle
from tests.fixtures import decoded_batch, fixture_images, write_fixture_weights, write_random_autoppn_head

OPEN = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0, "max_mask_area_frac": 1.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoppn")
    return write_fixture_weights(folder / "sam.pt", "l"), write_random_autoppn_head(folder / "head.safetensors")


def _segment(files, chunk=7, **kw):
    sam, head = files
    cfg = AutoPPNConfig(weights=str(head), **kw)
    model = ModelConfig(name="mini-l", weights=str(sam))
    return Segment(model, SegmentPrompts("autoppn", autoppn=cfg), SegmentConfig(decoder_chunk=chunk), StorageConfig())


def _batch():
    images = fixture_images()
    return decoded_batch([images["img0"], images["img1"]], ["a", "b"], 512), images


@pytest.mark.parametrize("mode", ["box+point", "box", "point"])
def test_every_prompt_gives_a_mask_without_filters(files, mode):
    out = _segment(files, prompt_mode=mode, top_n=12, **OPEN)(_batch()[0])
    for row in range(2):
        assert len(out[col.MASK_RLE_COUNTS][row]) == 12
        assert sorted(out[col.MASK_PROMPT_INDEX][row]) == list(range(12))
        assert all(len(points) == 1 for points in out[col.MASK_PROMPT_POINTS][row])


def test_results_do_not_depend_on_the_decoder_chunk_and_masks_are_valid(files):
    batch, images = _batch()
    a = _segment(files, chunk=5, top_n=20, **OPEN)(dict(batch))
    b = _segment(files, chunk=64, top_n=20, **OPEN)(dict(batch))
    assert [list(v) for v in a[col.MASK_RLE_COUNTS]] == [list(v) for v in b[col.MASK_RLE_COUNTS]]
    size = list(images["img1"].shape[:2])
    for counts, area in zip(a[col.MASK_RLE_COUNTS][1], a[col.MASK_AREA][1], strict=True):
        assert decode_rle({"size": size, "counts": counts}).sum() == area


def test_filters_drop_masks_as_in_grid_mode(files):
    batch, _ = _batch()
    strict = _segment(files, top_n=20, pred_iou_thresh=0.99)(dict(batch))
    assert all(len(v) == 0 for v in strict[col.MASK_RLE_COUNTS])  # a random decoder never predicts IoU > 0.99
    nms = _segment(files, top_n=20, **{**OPEN, "box_nms_thresh": 0.3})(dict(batch))
    assert 0 < len(nms[col.MASK_RLE_COUNTS][0]) < 20
    ious = np.asarray(nms[col.MASK_PREDICTED_IOU][0])
    assert np.all(np.diff(ious) <= 0)  # ordered by predicted IoU, as grid mode


def test_missing_head_is_an_error():
    with pytest.raises(ValueError, match="autoppn.weights"):
        Segment(ModelConfig(name="mini-l"), SegmentPrompts("autoppn"), SegmentConfig(decoder_chunk=8), StorageConfig())
