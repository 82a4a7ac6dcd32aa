"""Test images written on demand: textured synthetic photos and a hostile corpus of the files a real bucket holds.

Everything is deterministic (fixed seeds), so a corpus written twice is byte-identical.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SAMPLE_PHOTOS = Path(__file__).resolve().parent / "data" / "images"
"""The four bundled real photos (see tests/data/README.md)."""

NOT_LISTED = ("notes.txt",)
"""Files the hostile corpus writes that listing must skip (not an image extension); absent from its mapping."""

HUGE_DECLARED_HW = (50_000, 50_000)
"""(height, width) declared by the corpus's ``huge_declared.png``, whose file is a few hundred bytes."""


def textured_image(height: int, width: int, seed: int) -> np.ndarray:
    """HWC uint8 RGB with what segmentation needs: a smooth colour field, overlapping shapes, stripes and noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    field = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(3, 8))):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(rng.integers(0, 256, size=3).tolist())
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1 + 1, y1 + 1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    yy, xx = np.mgrid[0:height, 0:width]
    period = rng.uniform(6, 30)
    stripes = 18 * np.sin((xx * np.cos(period) + yy * np.sin(period)) * 2 * np.pi / period)
    noise = rng.normal(0, 6, size=(height, width, 3))
    pixels = np.asarray(field, dtype=np.float64) + stripes[:, :, None] + noise
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode(image: np.ndarray | Image.Image, fmt: str, **save_args: object) -> bytes:
    """Encode an array or PIL image with PIL; ``save_args`` go to ``Image.save``."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    pil.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def write_good_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Write ``n`` textured RGB JPEGs (quality 90) with sides in 200–900 px, alternating landscape and portrait."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        long_side, short_side = int(rng.integers(300, 901)), int(rng.integers(200, 600))
        h, w = (short_side, long_side) if i % 2 == 0 else (long_side, short_side)
        path = folder / f"img_{i:04d}.jpg"
        path.write_bytes(encode(textured_image(h, w, seed=seed * 100_003 + i), "JPEG", quality=90))
        paths.append(path)
    return paths


def huge_declared_png(width: int, height: int) -> bytes:
    """A structurally valid 8-bit RGB PNG whose IHDR declares ``width``×``height`` but whose pixel data is tiny."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def exif_jpeg(image: np.ndarray, orientation: int) -> bytes:
    """JPEG of ``image`` as stored pixels, with EXIF Orientation ``orientation`` (viewers rotate it on display)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=92, exif=exif.tobytes())


def animation(fmt: str, frames: list[np.ndarray]) -> bytes:
    """A looping animation (GIF, WebP or APNG) of ``frames``; the first frame is the one decoded."""
    first, *rest = [Image.fromarray(f) for f in frames]
    return encode(first, fmt, save_all=True, append_images=rest, duration=120, loop=0)


def write_hostile_corpus(folder: Path) -> dict[str, str | None]:
    """Write a folder mixing good photos with every kind of file a real bucket holds.

    Returns {posix path relative to ``folder``: expected decode ``error_type``, or None when it must decode}.
    Files in ``NOT_LISTED`` are written too but are not in the mapping: listing must skip them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {**_good_files(), **_bad_files()}
    for rel, (payload, _) in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    (folder / "notes.txt").write_text("Shot list for the spring catalogue.\n", encoding="utf-8")
    return {rel: expected for rel, (_, expected) in files.items()}


def _sample(name: str) -> bytes:
    return (SAMPLE_PHOTOS / name).read_bytes()


def _good_files() -> dict[str, tuple[bytes, None]]:
    tex = textured_image
    rgba = np.dstack([tex(180, 260, 20), np.tile(np.linspace(0, 255, 260).astype(np.uint8), (180, 1))])
    palette = Image.fromarray(tex(150, 210, 21)).quantize(colors=64)
    makers: dict[str, Callable[[], bytes]] = {
        "astronaut.jpg": lambda: _sample("astronaut.jpg"),
        "photos/IMG_0042.JPG": lambda: _sample("coffee.jpg"),
        "photos/rocket launch.jpg": lambda: _sample("rocket.jpg"),
        "photos/2024/summer/chelsea.jpg": lambda: _sample("chelsea.jpg"),
        "café ☕.png": lambda: encode(tex(240, 320, 1), "PNG"),
        "scan.v2.final.jpeg": lambda: encode(tex(330, 250, 2), "JPEG", quality=85),
        "modes/cmyk.jpg": lambda: encode(Image.fromarray(tex(200, 300, 3)).convert("CMYK"), "JPEG", quality=92),
        "modes/gray16.png": lambda: encode(_gray16(220, 280, 4), "PNG"),
        "modes/palette_transparent.png": lambda: encode(palette, "PNG", transparency=0),
        "modes/rgba.png": lambda: encode(rgba, "PNG"),
        "modes/gray_alpha.png": lambda: encode(Image.fromarray(rgba).convert("LA"), "PNG"),
        "modes/bilevel.png": lambda: encode(Image.fromarray(tex(160, 240, 5)).convert("1"), "PNG"),
        "exif/rotate_6.jpg": lambda: exif_jpeg(tex(160, 240, 6), 6),
        "exif/rotate_3.jpg": lambda: exif_jpeg(tex(160, 240, 7), 3),
        "animated/loop.gif": lambda: animation("GIF", [tex(120, 180, s) for s in (8, 9, 10)]),
        "animated/loop.webp": lambda: animation("WEBP", [tex(120, 180, s) for s in (11, 12, 13)]),
        "animated/loop.apng.png": lambda: animation("PNG", [tex(120, 180, s) for s in (18, 19, 20)]),
        "tiny/1x1.png": lambda: encode(np.array([[[200, 30, 90]]], dtype=np.uint8), "PNG"),
        "tiny/2x300.png": lambda: encode(tex(300, 2, 14), "PNG"),
        "tiny/1x3000.png": lambda: encode(tex(3000, 1, 15), "PNG"),
        "formats/bitmap.bmp": lambda: encode(tex(190, 250, 16), "BMP"),
        "formats/scan.tiff": lambda: encode(tex(250, 190, 17), "TIFF", compression="tiff_deflate"),
    }
    return {rel: (make(), None) for rel, make in makers.items()}


def _bad_files() -> dict[str, tuple[bytes, str]]:
    photo = _sample("coffee.jpg")
    return {
        "corrupt.jpg": (np.random.default_rng(404).bytes(4096), "not_an_image"),
        "truncated.jpg": (photo[: len(photo) * 2 // 3], "truncated"),
        "empty.jpg": (b"", "empty"),
        "huge_declared.png": (huge_declared_png(HUGE_DECLARED_HW[1], HUGE_DECLARED_HW[0]), "too_large"),
        "readme.png": (b"This is not an image, just text saved with the wrong extension.\n" * 8, "not_an_image"),
    }


def _gray16(height: int, width: int, seed: int) -> np.ndarray:
    gray = textured_image(height, width, seed).mean(axis=2)
    return np.clip(np.rint(gray * 257), 0, 65535).astype(np.uint16)
