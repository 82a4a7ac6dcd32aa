"""Decode operator: compressed image bytes → the RGB image resized for the encoder, or an error row. CPU only.

Columns read: ``image_bytes``; ``error_stage`` / ``error_type`` / ``error_message`` (a row where any is set failed
earlier and passes through untouched; absent columns mean no earlier errors).
Columns written: ``image_rgb`` (raw HWC uint8 RGB bytes, long side ``long_side``, resized exactly as the official
predictor does), ``input_h`` / ``input_w`` (int32, its size), ``image_height`` / ``image_width`` (int32, original
size after EXIF orientation), the three error columns, ``seconds_decode`` (float64, time spent on the row), and with
``detect_side`` (yolo prompts) ``image_detect_rgb`` / ``detect_h`` / ``detect_w``: the image with long side
``detect_side`` for the detector, never enlarged (empty, size 0, when it equals ``image_rgb``). ``image_bytes`` is
dropped; every other column passes through, and every input row gives exactly one output row. Error rows carry
empty ``image_rgb``, 0 for ``input_h`` / ``input_w``, and the declared size (as stored, before EXIF orientation)
when the header was read, else 0. Resources: one CPU per task (``DecodeConfig.num_cpus``), memory of one decoded
image at a time.

Decisions:

- EXIF orientation is applied first (``ImageOps.exif_transpose``); sizes and pixels are the oriented image.
- Every mode becomes RGB. Alpha is dropped, not composited: the stored colour under transparent pixels is kept,
  which is what ``Image.open(p).convert("RGB")``, the usual way to feed SAM, gives. Palette, bilevel, CMYK and
  YCbCr go through PIL's ``convert("RGB")``.
- 16-bit grayscale (``I;16*``) maps v → round(v / 257) = (v + 128) // 257, so 65535 → 255; PIL's own convert
  clips at 255 instead and turns almost every pixel white. 16-bit RGB(A) files are reduced to 8 bit by PIL at
  open (v >> 8), which differs from that by at most 1.
- 32-bit ``I`` and ``F`` images are stretched from their own finite min–max range to 0..255; a constant image
  becomes 0, NaN becomes 0 and ±inf the ends of the range.
- Animated GIF / WebP / APNG and multi-page TIFF: the first frame.
- Resize: ``resize_longest_side`` (a side that would round to 0 px, e.g. a 1×3000 strip, is kept at 1 px).
- Limits: the declared width×height is checked right after ``Image.open``, before any pixel is decoded, against
  ``DecodeConfig.max_pixels`` → ``too_large``. PIL's own global bomb limit is raised to ours when lower, so that it
  can only fire on images we refuse anyway (its error or warning is then recorded as ``too_large``).
- ``decode.device: cuda``: a JPEG (RGB or grayscale, no EXIF rotation) is only opened for its header and limits
  here and leaves in ``image_jpeg`` with empty ``image_rgb`` and its sizes set; the segment actor decodes it
  (:mod:`operators.device_decode`). Other files are decoded here as below.
- Truncated files are refused (PIL's ``LOAD_TRUNCATED_IMAGES`` stays off) → ``truncated``; zero bytes → ``empty``;
  a format PIL cannot identify → ``not_an_image``; any other failure → ``decode_failed``. The message is one
  line with PIL's reason. One bad image never fails the batch.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from operators.rows import mark_error
from pipeline.config.sections import DecodeConfig
from pipeline.prompts.yolo import resize_for_detector
from pipeline.schema import (
    DETECT_H,
    DETECT_W,
    IMAGE_BYTES,
    IMAGE_DETECT_RGB,
    IMAGE_HEIGHT,
    IMAGE_JPEG,
    IMAGE_ORIGINAL_RGB,
    IMAGE_RGB,
    IMAGE_WIDTH,
    INPUT_H,
    INPUT_W,
    error_columns,
    has_error,
    seconds_column,
)
from pipeline.segment.geometry import preprocess_shape, resize_longest_side

STAGE = "decode"
ORIENTATION = 0x0112  # the EXIF tag
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class Decoded:
    """One row's result: the resized RGB bytes and sizes, or an error (type, message) with what size is known."""

    rgb: bytes = b""
    original: bytes = b""
    detect: bytes = b""
    detect_hw: tuple[int, int] = (0, 0)
    input_hw: tuple[int, int] = (0, 0)
    image_hw: tuple[int, int] = (0, 0)
    error: tuple[str, str] | None = None
    jpeg: bytes = b""
    """The file itself, left for the segment actor to decode on its GPU (``decode.device: cuda``)."""


def decode_images(
    batch: dict[str, np.ndarray],
    cfg: DecodeConfig,
    long_side: int,
    keep_original: bool = False,
    detect_side: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode every row's ``image_bytes`` into ``image_rgb`` with long side ``long_side`` (see the module doc).

    ``keep_original`` also writes ``image_original_rgb`` (raw HWC uint8 at the original size), which crop layers
    of the grid mode need; it is off otherwise to keep full-size pixels out of the object store. ``detect_side``
    adds the detector's copy (yolo prompts), at most ``detect_side`` pixels long.
    """
    if IMAGE_BYTES not in batch:
        raise ValueError(f"decode_images needs column {IMAGE_BYTES!r}, got columns {sorted(batch)}")
    if long_side < 1:
        raise ValueError(f"long_side must be >= 1, got {long_side}")
    _defer_pil_limit_to(cfg.max_pixels)
    n = len(batch[IMAGE_BYTES])
    errors = error_columns(batch, n)
    on_device = cfg.device == "cuda"
    rgb = np.full(n, b"", dtype=object)
    jpegs = np.full(n, b"", dtype=object)
    originals = np.full(n, b"", dtype=object)
    detect = np.full(n, b"", dtype=object)
    sizes = {c: np.zeros(n, dtype=np.int32) for c in (INPUT_H, INPUT_W, IMAGE_HEIGHT, IMAGE_WIDTH, DETECT_H, DETECT_W)}
    seconds = np.zeros(n)
    for i, raw in enumerate(batch[IMAGE_BYTES]):
        if has_error(errors, i):
            continue
        start = time.perf_counter()
        result = on_device and device_jpeg(raw, cfg.max_pixels, long_side)
        if not result:
            result = decode_one(raw, cfg.max_pixels, long_side, keep_original, detect_side)
        seconds[i] = time.perf_counter() - start
        rgb[i] = result.rgb
        jpegs[i] = result.jpeg
        originals[i] = result.original
        detect[i] = result.detect
        sizes[DETECT_H][i], sizes[DETECT_W][i] = result.detect_hw
        sizes[INPUT_H][i], sizes[INPUT_W][i] = result.input_hw
        sizes[IMAGE_HEIGHT][i], sizes[IMAGE_WIDTH][i] = result.image_hw
        if result.error is not None:
            mark_error(errors, i, STAGE, *result.error)
    out = {k: v for k, v in batch.items() if k != IMAGE_BYTES}
    if detect_side is None:
        del sizes[DETECT_H], sizes[DETECT_W]
    else:
        out[IMAGE_DETECT_RGB] = detect
    out.update({IMAGE_RGB: rgb, **sizes, **errors, seconds_column(STAGE): seconds})
    if keep_original:
        out[IMAGE_ORIGINAL_RGB] = originals
    if on_device:
        out[IMAGE_JPEG] = jpegs
    return out


def device_jpeg(raw: bytes | None, max_pixels: int, long_side: int) -> Decoded | None:
    """A JPEG the segment actor decodes on its GPU: the file, its sizes from the header, or the too_large error;
    None when this file is decoded here (not a JPEG, CMYK, an EXIF rotation, or a header PIL cannot read)."""
    if not raw:
        return None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L") or im.getexif().get(ORIENTATION, 1) != 1:
                return None
            declared = (im.height, im.width)
    except Exception:  # decode_one gives its error row
        return None
    if declared[0] * declared[1] > max_pixels:
        return _too_large(declared, max_pixels)
    return Decoded(jpeg=raw, input_hw=preprocess_shape(*declared, long_side), image_hw=declared)


def decode_one(
    raw: bytes | None, max_pixels: int, long_side: int, keep_original: bool, detect_side: int | None
) -> Decoded:
    if not raw:
        return Decoded(error=("empty", "the file has zero bytes"))
    declared = (0, 0)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            declared = (im.height, im.width)
            if im.width * im.height > max_pixels:
                return _too_large(declared, max_pixels)
            im.load()
            image = _to_rgb(ImageOps.exif_transpose(im))
        resized = resize_longest_side(image, long_side)
    except Exception as exc:  # whatever one file does becomes that file's error row
        return Decoded(image_hw=declared, error=(_error_type(exc), _describe(exc)))
    original = image.tobytes() if keep_original else b""
    detect, detect_hw = b"", (0, 0)
    if detect_side is not None:
        for_detector = resize_for_detector(image, detect_side)
        if for_detector.shape != resized.shape:  # equal shapes: the same pixels, the detector reads image_rgb
            detect, detect_hw = for_detector.tobytes(), for_detector.shape[:2]
    return Decoded(resized.tobytes(), original, detect, detect_hw, resized.shape[:2], image.shape[:2])


def _too_large(declared_hw: tuple[int, int], max_pixels: int) -> Decoded:
    h, w = declared_hw
    message = f"declared size {w}x{h} = {w * h} pixels exceeds decode.max_pixels={max_pixels}"
    return Decoded(image_hw=declared_hw, error=("too_large", message))


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode → HWC uint8 RGB (alpha dropped; 16-bit and 32-bit grayscale scaled as the module doc says)."""
    if im.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(im).astype(np.uint32)
        return _gray_to_rgb(((wide + 128) // 257).astype(np.uint8))
    if im.mode in ("I", "F"):
        return _gray_to_rgb(_stretch_to_uint8(np.asarray(im, dtype=np.float64)))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.max() == finite.min():
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = finite.min(), finite.max()
    scaled = np.nan_to_num((values - lo) * (255.0 / (hi - lo)), nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _error_type(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not_an_image"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too_large"
    if isinstance(exc, OSError) and "truncated" in str(exc).lower():
        return "truncated"
    return "decode_failed"


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        # PIL's text names the BytesIO object's address, which would make reruns differ.
        return "UnidentifiedImageError: Pillow cannot identify the image format"
    return f"{type(exc).__name__}: {str(exc) or 'no details'}"


def _defer_pil_limit_to(max_pixels: int) -> None:
    # PIL refuses (above 2x) or warns about (above 1x) Image.MAX_IMAGE_PIXELS inside Image.open, before our own
    # check could run. At >= max_pixels it only fires on images we refuse anyway; a higher or disabled (None)
    # limit set by the user is left alone.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
