"""The detect operator with a randomly initialised yolov8n (ultralytics, the [yolo] extra): box prompt columns in
original pixels, border snapping, class filters, error rows; the segment operator decoding those boxes with the
single-mask token; and a detector run with networking unavailable that writes nothing outside its cache."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from operators.detect import Detect
from operators.segment import Segment, SegmentPrompts
from pipeline import schema as col
from pipeline.config.sections import ModelConfig, SegmentConfig, StorageConfig, YoloConfig
from pipeline.prompts.yolo import class_indices, snap_to_border
from pipeline.segment.masks import decode_rle
from tests.fixtures import decoded_batch, fixture_images, write_fixture_weights
from tests.yolo import write_random_yolo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo")
    return write_random_yolo(folder / "yolov8n-random.pt", folder / "cache"), folder / "cache"


def _yolo(weights, **kw):
    # A random detector's confidences are ~1e-4: conf 0 keeps its boxes.
    return YoloConfig(weights=str(weights), conf=0.0, max_det=5, imgsz=320, **kw)


def _batch():
    images = fixture_images()
    batch = decoded_batch([images["img0"], images["img1"]], ["a", "b"], 512)
    return batch, images


def test_detect_writes_box_prompts_in_original_pixels(yolo_weights):
    weights, cache = yolo_weights
    detect = Detect(_yolo(weights), StorageConfig(), device="cpu", cache_dir=str(cache))
    batch, images = _batch()
    out = detect(batch)
    for row, name in enumerate(["img0", "img1"]):
        h, w = images[name].shape[:2]
        boxes = np.asarray(out[col.PROMPT_BOXES_XYXY][row]).reshape(-1, 4)
        assert len(boxes) == 5 == len(out[col.PROMPT_SCORES][row]) == len(out[col.PROMPT_BOX_IDS][row])
        assert boxes.min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
        assert all(1 <= c <= 80 for c in out[col.PROMPT_CATEGORY_IDS][row])
    assert len(set(out[col.PROMPT_BOX_IDS][0]) | set(out[col.PROMPT_BOX_IDS][1])) == 10


def test_class_filter_border_snap_and_error_rows(yolo_weights):
    weights, cache = yolo_weights
    assert class_indices(("class3", 7), {3: "class3", 7: "class7"}) == [3, 7]
    with pytest.raises(ValueError, match="'dog' is not a class"):
        class_indices(("dog",), {0: "class0"})
    snapped = snap_to_border(np.array([[15.0, 30, 90, 85]]), (100, 100), 20)
    assert snapped.tolist() == [[0.0, 30, 100, 100]]
    detect = Detect(_yolo(weights, classes=("class5",)), StorageConfig(), device="cpu", cache_dir=str(cache))
    batch, _ = _batch()
    batch[col.ERROR_STAGE][0], batch[col.ERROR_TYPE][0] = "decode", "truncated"
    out = detect(batch)
    assert list(out[col.PROMPT_BOXES_XYXY][0]) == [] and out[col.ERROR_TYPE][0] == "truncated"
    assert set(out[col.PROMPT_CATEGORY_IDS][1]) <= {6}


def test_segment_decodes_detector_boxes_with_the_single_mask_token(yolo_weights, tmp_path):
    weights, cache = yolo_weights
    detect = Detect(_yolo(weights), StorageConfig(), device="cpu", cache_dir=str(cache))
    batch, images = _batch()
    prompts = detect(batch)
    sam = ModelConfig(name="mini-l", weights=str(write_fixture_weights(tmp_path / "w.pt", "l")))
    segment = Segment(
        sam, SegmentPrompts("yolo", yolo=_yolo(weights)), SegmentConfig(decoder_chunk=4), StorageConfig()
    )
    assert segment.boxes.multimask is False
    out = segment(prompts)
    for row, name in enumerate(["img0", "img1"]):
        assert list(out[col.MASK_PROMPT_INDEX][row]) == list(range(5))  # no filters: one mask per box
        for counts in out[col.MASK_RLE_COUNTS][row]:
            assert decode_rle({"size": list(images[name].shape[:2]), "counts": counts}).shape == images[name].shape[:2]


def test_detector_runs_offline_and_writes_only_its_cache(yolo_weights, tmp_path):
    weights, _ = yolo_weights
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    script = textwrap.dedent(
        f"""
        import socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network unavailable in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import numpy as np
        from pipeline.config.sections import StorageConfig, YoloConfig
        from pipeline.prompts.yolo import Detector
        cfg = YoloConfig(weights={str(weights)!r}, conf=0.0, max_det=3, imgsz=256)
        found = Detector(cfg, StorageConfig(), "cpu", {str(cache)!r}).detect(
            [np.zeros((200, 300, 3), np.uint8)], np.array([[400, 600]])
        )
        print("boxes", len(found[0].scores), "attempts", len(attempts))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ULTRALYTICS_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "boxes 3 attempts 0" in done.stdout
    assert list(home.iterdir()) == []  # no ~/.config/Ultralytics, nothing else in the user's home
    assert (cache / "ultralytics" / "Ultralytics" / "settings.json").exists()


def test_missing_weights_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="needs detector weights") as info:
        Detect(YoloConfig(), StorageConfig())
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: corrupted, or pickle data that cannot be read safely") as info:
        Detect(YoloConfig(weights=str(bad)), StorageConfig(), cache_dir=str(tmp_path / "c"))
    assert "\n" not in str(info.value)
