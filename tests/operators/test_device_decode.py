"""``decode.device: cuda``, run here with torchvision's CPU decoder in place of nvJPEG: every file of the hostile
corpus ends as it does with CPU decoding (the same error type, or an image of the same size and nearly the same
pixels), JPEGs travel compressed to the segment actor, and a JPEG the device decoder rejects gets the CPU path's
error row there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from operators.decode import decode_images
from operators.device_decode import decode_jpegs_on_device
from pipeline import schema as col
from pipeline.config.sections import DecodeConfig
from tests.images import write_hostile_corpus
from tests.operators.test_decode import make_batch

LONG_SIDE = 512


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return sorted(folder / rel for rel in write_hostile_corpus(folder))


def _both_ways(paths: list[Path]) -> tuple[dict, dict, dict]:
    payloads = [p.read_bytes() for p in paths]
    on_cpu = decode_images(make_batch(payloads), DecodeConfig(), LONG_SIDE)
    passed = decode_images(make_batch(payloads), DecodeConfig(device="cuda"), LONG_SIDE)
    errors = col.error_columns(passed, len(paths))
    rows = [i for i in range(len(paths)) if not col.has_error(errors, i)]
    images = decode_jpegs_on_device(passed, rows, errors, torch.device("cpu"), DecodeConfig().max_pixels)
    return on_cpu, {**passed, **errors}, images


def test_every_file_ends_as_with_cpu_decoding(corpus: list[Path]) -> None:
    on_cpu, passed, images = _both_ways(corpus)
    assert images, "some JPEGs were left for the device"
    for i, path in enumerate(corpus):
        assert passed[col.ERROR_TYPE][i] == on_cpu[col.ERROR_TYPE][i], path.name
        if on_cpu[col.ERROR_TYPE][i] is not None:
            continue
        for key in (col.INPUT_H, col.INPUT_W, col.IMAGE_HEIGHT, col.IMAGE_WIDTH):
            assert passed[key][i] == on_cpu[key][i], (path.name, key)
        h, w = int(on_cpu[col.INPUT_H][i]), int(on_cpu[col.INPUT_W][i])
        expected = np.frombuffer(on_cpu[col.IMAGE_RGB][i], np.uint8).reshape(h, w, 3).astype(int)
        if i in images:  # decoded "on the device": only the resize differs from PIL's
            assert passed[col.IMAGE_RGB][i] == b"" and passed[col.IMAGE_JPEG][i] == path.read_bytes()
            got = images[i].numpy().astype(int)
            assert got.shape == expected.shape
            assert np.abs(got - expected).mean() < 1.0 and np.abs(got - expected).max() <= 48, path.name
        else:
            assert passed[col.IMAGE_JPEG][i] == b"" and passed[col.IMAGE_RGB][i] == on_cpu[col.IMAGE_RGB][i]


def test_a_jpeg_the_device_rejects_gets_the_cpu_error_row(corpus: list[Path]) -> None:
    good = next(p for p in corpus if p.suffix.lower() in (".jpg", ".jpeg") and "exif" not in p.name)
    truncated = good.read_bytes()[: len(good.read_bytes()) // 2]
    batch = decode_images(make_batch([good.read_bytes(), truncated]), DecodeConfig(device="cuda"), LONG_SIDE)
    assert batch[col.IMAGE_JPEG][1] == truncated  # its header is fine: it travels
    errors = col.error_columns(batch, 2)
    images = decode_jpegs_on_device(batch, [0, 1], errors, torch.device("cpu"), DecodeConfig().max_pixels)
    assert list(images) == [0]
    assert errors[col.ERROR_STAGE][1] == "decode" and errors[col.ERROR_TYPE][1] == "truncated"


def test_the_segment_actor_labels_jpegs_it_decodes_itself(tmp_path) -> None:
    import io

    from PIL import Image

    from operators.segment import Segment, SegmentPrompts
    from pipeline.config.sections import BoxesConfig, ModelConfig, SegmentConfig, StorageConfig
    from pipeline.segment.masks import decode_rle, mask_iou
    from tests.fixtures import fixture_images, write_fixture_weights

    def jpeg(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    payloads = [jpeg(image) for image in fixture_images().values()]
    boxes = col.object_column([np.array([40, 30, 300, 250], np.float32)] * len(payloads))
    model = ModelConfig(name="mini-l", weights=str(write_fixture_weights(tmp_path / "sam.pt", "l")), precision="fp32")
    labeled = []
    for device in ("cpu", "cuda"):
        decode = DecodeConfig(device=device)
        batch = decode_images(make_batch(payloads), decode, LONG_SIDE)
        batch[col.PROMPT_BOXES_XYXY] = boxes
        segment = Segment(
            model, SegmentPrompts("boxes", boxes=BoxesConfig()), SegmentConfig(), StorageConfig(), 1, decode
        )
        labeled.append(segment(batch))
    on_cpu, in_actor = labeled
    assert col.IMAGE_JPEG not in in_actor and all(e is None for e in in_actor[col.ERROR_TYPE])
    for ours, theirs in zip(in_actor[col.MASK_RLE_COUNTS], on_cpu[col.MASK_RLE_COUNTS], strict=True):
        assert len(ours) == len(theirs) == 1
    sizes = list(zip(on_cpu[col.IMAGE_HEIGHT], on_cpu[col.IMAGE_WIDTH], strict=True))
    for k, (h, w) in enumerate(sizes):
        a = decode_rle({"size": [int(h), int(w)], "counts": in_actor[col.MASK_RLE_COUNTS][k][0]})
        b = decode_rle({"size": [int(h), int(w)], "counts": on_cpu[col.MASK_RLE_COUNTS][k][0]})
        assert mask_iou(a, b) >= 0.95
    assert (in_actor[col.seconds_column("decode")] > 0).all()  # the actor's decoding is counted as decode time
