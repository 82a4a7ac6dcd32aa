"""The decode operator on hand-built batches: hostile files, every PIL mode, EXIF, limits, pass-through."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from operators.decode import decode_images
from pipeline.config.sections import DecodeConfig
from pipeline.schema import (
    ERROR_MESSAGE,
    ERROR_STAGE,
    ERROR_TYPE,
    IMAGE_BYTES,
    IMAGE_HEIGHT,
    IMAGE_ID,
    IMAGE_RGB,
    IMAGE_URI,
    IMAGE_WIDTH,
    INPUT_H,
    INPUT_W,
)
from pipeline.segment.geometry import resize_longest_side
from tests.images import (
    HUGE_DECLARED_HW,
    SAMPLE_PHOTOS,
    encode,
    huge_declared_png,
    textured_image,
    write_good_images,
    write_hostile_corpus,
)

CFG = DecodeConfig()
# Good corpus files whose pixels are by definition not PIL's convert("RGB"), or too thin for resize_longest_side.
NOT_PLAIN_CONVERT = {"modes/gray16.png", "tiny/1x3000.png"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, write_hostile_corpus(folder)


def make_batch(payloads: list[bytes], **extra: np.ndarray) -> dict[str, np.ndarray]:
    n = len(payloads)
    batch = {
        IMAGE_ID: np.array([f"id-{i}" for i in range(n)], dtype=object),
        IMAGE_URI: np.array([f"file:///in/{i}" for i in range(n)], dtype=object),
        IMAGE_BYTES: np.array(payloads, dtype=object),
        ERROR_STAGE: np.full(n, None, dtype=object),
        ERROR_TYPE: np.full(n, None, dtype=object),
        ERROR_MESSAGE: np.full(n, None, dtype=object),
    }
    return {**batch, **extra}


def decoded(out: dict[str, np.ndarray], i: int) -> np.ndarray:
    shape = (out[INPUT_H][i], out[INPUT_W][i], 3)
    return np.frombuffer(out[IMAGE_RGB][i], dtype=np.uint8).reshape(shape)


def decode_one(payload: bytes, long_side: int = 1024, cfg: DecodeConfig = CFG) -> dict[str, np.ndarray]:
    out = decode_images(make_batch([payload]), cfg, long_side)
    assert out[ERROR_TYPE][0] is None, out[ERROR_MESSAGE][0]
    return out


def pil_reference(path: Path) -> np.ndarray:
    """What the official predictor is fed: PIL decode, EXIF orientation, convert("RGB")."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def test_hostile_corpus_gives_expected_outcome_per_file(corpus: tuple[Path, dict[str, str | None]]) -> None:
    folder, expected = corpus
    names = sorted(expected)
    out = decode_images(make_batch([(folder / n).read_bytes() for n in names]), CFG, 1024)

    assert {k: len(v) for k, v in out.items()} == {k: len(names) for k in out}
    assert IMAGE_BYTES not in out
    assert dict(zip(names, out[ERROR_TYPE], strict=True)) == {n: expected[n] for n in names}
    for i, name in enumerate(names):
        if expected[name] is None:
            assert out[ERROR_STAGE][i] is None and out[ERROR_MESSAGE][i] is None
            assert max(out[INPUT_H][i], out[INPUT_W][i]) == 1024
            assert len(out[IMAGE_RGB][i]) == out[INPUT_H][i] * out[INPUT_W][i] * 3
        else:
            assert out[ERROR_STAGE][i] == "decode"
            assert out[ERROR_MESSAGE][i] and "\n" not in out[ERROR_MESSAGE][i]
            assert out[IMAGE_RGB][i] == b"" and out[INPUT_H][i] == 0 and out[INPUT_W][i] == 0
    assert {"not_an_image", "truncated", "empty", "too_large"} <= set(expected.values())
    truncated = names.index("truncated.jpg")
    assert (out[IMAGE_HEIGHT][truncated], out[IMAGE_WIDTH][truncated]) == (400, 600)


def test_error_messages_are_identical_on_rerun(corpus: tuple[Path, dict[str, str | None]]) -> None:
    folder, expected = corpus
    bad = sorted(n for n, e in expected.items() if e is not None)
    payloads = [(folder / n).read_bytes() for n in bad]
    first = decode_images(make_batch(payloads), CFG, 1024)
    second = decode_images(make_batch(payloads), CFG, 1024)
    assert list(first[ERROR_MESSAGE]) == list(second[ERROR_MESSAGE])


@pytest.mark.parametrize("long_side", [1024, 512])
def test_good_files_equal_the_official_resize_of_pil_decode(
    corpus: tuple[Path, dict[str, str | None]], long_side: int
) -> None:
    folder, expected = corpus
    names = sorted(n for n, e in expected.items() if e is None and n not in NOT_PLAIN_CONVERT)
    out = decode_images(make_batch([(folder / n).read_bytes() for n in names]), CFG, long_side)
    for i, name in enumerate(names):
        original = pil_reference(folder / name)
        assert (out[IMAGE_HEIGHT][i], out[IMAGE_WIDTH][i]) == original.shape[:2], name
        np.testing.assert_array_equal(decoded(out, i), resize_longest_side(original, long_side), err_msg=name)


def test_bundled_sample_photos_decode_at_their_size() -> None:
    paths = sorted(SAMPLE_PHOTOS.glob("*.jpg"))
    out = decode_images(make_batch([p.read_bytes() for p in paths]), CFG, 1024)
    sizes = {p.name: (int(h), int(w)) for p, h, w in zip(paths, out[IMAGE_HEIGHT], out[IMAGE_WIDTH], strict=True)}
    assert sizes == {
        "astronaut.jpg": (512, 512),
        "chelsea.jpg": (300, 451),
        "coffee.jpg": (400, 600),
        "rocket.jpg": (427, 640),
    }
    assert list(out[ERROR_TYPE]) == [None] * 4
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(decoded(out, i), resize_longest_side(pil_reference(path), 1024))


@pytest.mark.parametrize(("orientation", "quarter_turns"), [(6, -1), (3, 2), (8, 1), (1, 0)])
def test_exif_orientation_is_applied(orientation: int, quarter_turns: int) -> None:
    stored = textured_image(160, 240, seed=30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    with Image.open(io.BytesIO(payload)) as im:
        stored_pixels = np.asarray(im.convert("RGB"))

    out = decode_one(payload)

    upright = np.rot90(stored_pixels, k=quarter_turns)
    assert (out[IMAGE_HEIGHT][0], out[IMAGE_WIDTH][0]) == upright.shape[:2]
    np.testing.assert_array_equal(decoded(out, 0), resize_longest_side(np.ascontiguousarray(upright), 1024))


def test_animated_files_decode_their_first_frame(corpus: tuple[Path, dict[str, str | None]]) -> None:
    folder, _ = corpus
    for name in ("animated/loop.gif", "animated/loop.webp", "animated/loop.apng.png"):
        payload = (folder / name).read_bytes()
        with Image.open(io.BytesIO(payload)) as im:
            assert im.n_frames == 3
            first = np.asarray(im.convert("RGB"))
            im.seek(1)
            second = np.asarray(im.convert("RGB"))
        image = decoded(decode_one(payload, long_side=180), 0)
        np.testing.assert_array_equal(image, first, err_msg=name)
        assert np.abs(image.astype(int) - second.astype(int)).mean() > 10, name


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_gray_maps_to_rounded_value_over_257(fmt: str) -> None:
    values = np.array([[0, 128, 129, 257, 1000, 30000, 65407, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    if fmt == "TIFF":
        image = Image.frombytes("I;16B", image.size, values.astype(">u2").tobytes())
    out = decode_one(encode(image, fmt), long_side=values.shape[1])
    rgb = decoded(out, 0)
    assert rgb.shape == (1, 8, 3)
    np.testing.assert_array_equal(rgb[..., 0], [[0, 0, 1, 1, 4, 117, 255, 255]])
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values / 257))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_sixteen_bit_corpus_photo_keeps_its_tones(corpus: tuple[Path, dict[str, str | None]]) -> None:
    folder, _ = corpus
    payload = (folder / "modes/gray16.png").read_bytes()
    with Image.open(io.BytesIO(payload)) as im:
        assert im.mode == "I;16"
        eight_bit = ((np.asarray(im).astype(np.uint32) + 128) // 257).astype(np.uint8)
    rgb = decoded(decode_one(payload, long_side=280), 0)
    np.testing.assert_array_equal(rgb, np.repeat(eight_bit[:, :, None], 3, axis=2))
    assert 40 < rgb.mean() < 215 and rgb.std() > 10


def test_alpha_is_dropped_not_composited() -> None:
    colour = textured_image(40, 60, seed=31)
    alpha = np.zeros((40, 60), dtype=np.uint8)
    alpha[:, 30:] = 255
    rgba = np.dstack([colour, alpha])
    np.testing.assert_array_equal(decoded(decode_one(encode(rgba, "PNG"), long_side=60), 0), colour)
    la = Image.fromarray(rgba).convert("LA")
    gray = np.asarray(la)[..., 0]
    out = decoded(decode_one(encode(la, "PNG"), long_side=60), 0)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_palette_with_transparency_uses_the_palette_colours() -> None:
    palette = Image.fromarray(textured_image(50, 70, seed=32)).quantize(colors=16)
    payload = encode(palette, "PNG", transparency=0)
    with Image.open(io.BytesIO(payload)) as im:
        assert im.mode == "P" and "transparency" in im.info
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(decoded(decode_one(payload, long_side=70), 0), expected)


@pytest.mark.parametrize(
    ("mode", "fmt", "tolerance"), [("CMYK", "JPEG", 12), ("YCbCr", "TIFF", 3), ("CMYK", "TIFF", 0)]
)
def test_colour_spaces_come_back_as_the_rgb_photo(mode: str, fmt: str, tolerance: int) -> None:
    rgb = textured_image(60, 90, seed=33)
    payload = encode(Image.fromarray(rgb).convert(mode), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(payload)) as im:
        assert im.mode == mode
    out = decoded(decode_one(payload, long_side=90), 0)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() <= tolerance


def test_bilevel_becomes_black_and_white() -> None:
    bits = textured_image(30, 50, seed=34).mean(axis=2) > 127
    payload = encode(Image.fromarray(bits), "PNG")
    out = decoded(decode_one(payload, long_side=50), 0)
    np.testing.assert_array_equal(out, np.repeat(np.where(bits, 255, 0)[:, :, None], 3, axis=2).astype(np.uint8))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[-1000, 0, 1000, 500]], dtype=np.int32), [[0, 128, 255, 191]]),
        (np.array([[-1.5, 0.0, 2.5, np.nan]], dtype=np.float32), [[0, 96, 255, 0]]),
        (np.array([[7, 7, 7, 7]], dtype=np.int32), [[0, 0, 0, 0]]),
    ],
)
def test_32_bit_images_are_stretched_over_their_own_range(values: np.ndarray, expected: list[list[int]]) -> None:
    payload = encode(Image.fromarray(values), "TIFF")
    with Image.open(io.BytesIO(payload)) as im:
        assert im.mode == ("F" if values.dtype == np.float32 else "I")
    rgb = decoded(decode_one(payload, long_side=4), 0)
    np.testing.assert_array_equal(rgb, np.repeat(np.array(expected, dtype=np.uint8)[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    ("hw", "long_side", "input_hw"),
    [
        ((1, 1), 1024, (1024, 1024)),
        ((300, 2), 1024, (1024, 7)),
        ((3000, 1), 1024, (1024, 1)),
        ((1, 3000), 512, (1, 512)),
    ],
)
def test_tiny_and_thin_images_keep_at_least_one_pixel(
    hw: tuple[int, int], long_side: int, input_hw: tuple[int, int]
) -> None:
    out = decode_one(encode(textured_image(*hw, seed=35), "PNG"), long_side=long_side)
    assert (out[IMAGE_HEIGHT][0], out[IMAGE_WIDTH][0]) == hw
    assert (out[INPUT_H][0], out[INPUT_W][0]) == input_hw
    assert decoded(out, 0).shape == (*input_hw, 3)


def test_max_pixels_is_checked_on_the_declared_size_before_decoding() -> None:
    # The pixel data holds 1 KiB: decoding would fail as truncated, so too_large proves nothing was decoded.
    payload = huge_declared_png(width=5000, height=4000)
    out = decode_images(make_batch([payload]), DecodeConfig(max_pixels=1_000_000), 1024)
    assert out[ERROR_TYPE][0] == "too_large"
    assert "5000x4000" in out[ERROR_MESSAGE][0] and "1000000" in out[ERROR_MESSAGE][0]
    assert (out[IMAGE_HEIGHT][0], out[IMAGE_WIDTH][0]) == (4000, 5000)
    lenient = decode_images(make_batch([payload]), DecodeConfig(max_pixels=20_000_000), 1024)
    assert lenient[ERROR_TYPE][0] == "truncated"


@pytest.mark.parametrize("pil_limit", ["default", None])
def test_huge_declared_png_is_refused_fast(monkeypatch: pytest.MonkeyPatch, pil_limit: str | None) -> None:
    if pil_limit is None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    payload = huge_declared_png(width=HUGE_DECLARED_HW[1], height=HUGE_DECLARED_HW[0])
    assert len(payload) < 1000
    start = time.perf_counter()
    out = decode_images(make_batch([payload]), CFG, 1024)
    assert time.perf_counter() - start < 2.0
    assert out[ERROR_TYPE][0] == "too_large"
    assert out[IMAGE_RGB][0] == b""


def test_pil_global_limit_does_not_preempt_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    payload = encode(textured_image(300, 400, seed=36), "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode_one(payload, cfg=DecodeConfig(max_pixels=200_000))
    assert (out[IMAGE_HEIGHT][0], out[IMAGE_WIDTH][0]) == (300, 400)
    refused = decode_images(make_batch([payload]), DecodeConfig(max_pixels=100_000), 1024)
    assert refused[ERROR_TYPE][0] == "too_large"


def test_earlier_errors_and_other_columns_pass_through() -> None:
    good = encode(textured_image(100, 150, seed=37), "JPEG")
    labels = np.array([3, 1, 4], dtype=np.int64)
    meta = np.array([{"a": 1}, None, "x"], dtype=object)
    batch = make_batch([good, b"", good], label=labels, meta=meta)
    batch[ERROR_STAGE][1], batch[ERROR_TYPE][1], batch[ERROR_MESSAGE][1] = "read", "too_large", "file is 3 GB"

    out = decode_images(batch, CFG, 512)

    assert list(out[ERROR_STAGE]) == [None, "read", None]
    assert list(out[ERROR_TYPE]) == [None, "too_large", None]
    assert list(out[ERROR_MESSAGE]) == [None, "file is 3 GB", None]
    assert out[IMAGE_RGB][1] == b"" and out[INPUT_H][1] == 0 and out[IMAGE_HEIGHT][1] == 0
    assert out[INPUT_W][0] == 512 and out[INPUT_W][2] == 512
    np.testing.assert_array_equal(out["label"], labels)
    assert list(out["meta"]) == list(meta)
    assert list(out[IMAGE_ID]) == ["id-0", "id-1", "id-2"]
    written = {IMAGE_RGB, INPUT_H, INPUT_W, IMAGE_HEIGHT, IMAGE_WIDTH, "seconds_decode"}
    assert set(out) == set(batch) - {IMAGE_BYTES} | written
    assert all(out[c].dtype == np.int32 for c in (INPUT_H, INPUT_W, IMAGE_HEIGHT, IMAGE_WIDTH))


def test_missing_error_columns_mean_no_earlier_errors() -> None:
    good = encode(textured_image(64, 48, seed=38), "PNG")
    out = decode_images({IMAGE_BYTES: np.array([good, b""], dtype=object)}, CFG, 64)
    assert list(out[ERROR_TYPE]) == [None, "empty"]
    assert list(out[ERROR_STAGE]) == [None, "decode"]
    assert (out[INPUT_H][0], out[INPUT_W][0]) == (64, 48)


def test_empty_batch_gives_empty_columns() -> None:
    out = decode_images(make_batch([]), CFG, 1024)
    assert {k: len(v) for k, v in out.items()} == dict.fromkeys(out, 0)
    assert IMAGE_RGB in out and IMAGE_BYTES not in out


def test_bad_arguments_are_one_line_value_errors() -> None:
    with pytest.raises(ValueError, match="image_bytes"):
        decode_images({IMAGE_URI: np.array(["a"], dtype=object)}, CFG, 1024)
    with pytest.raises(ValueError, match="long_side"):
        decode_images(make_batch([]), CFG, 0)


def test_synthetic_good_images_are_deterministic_textured_and_varied(tmp_path: Path) -> None:
    paths = write_good_images(tmp_path / "a", 6, seed=3)
    again = write_good_images(tmp_path / "b", 6, seed=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    out = decode_images(make_batch([p.read_bytes() for p in paths]), CFG, 1024)
    shapes = list(zip(out[IMAGE_HEIGHT], out[IMAGE_WIDTH], strict=True))
    assert all(min(s) >= 200 and max(s) <= 900 for s in shapes)
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    for i in range(len(paths)):
        image = decoded(out, i)
        packed = (image[..., 0].astype(np.int64) << 16) | (image[..., 1].astype(np.int64) << 8) | image[..., 2]
        assert image.std() > 20 and len(np.unique(packed)) > 1000
