"""Frozen-encoder embeddings for training: computed on the fly, or precomputed once and reused (fp16 shards).

A shard is one ``.npz`` (``image_ids`` [n] str, ``embeddings`` [n,256,64,64] float16) under
``<dir>/<key>/``, where the key names the encoder (model name + weights sha256) so that other weights never reuse
them; its file name hashes its image ids, so a rerun finds and reuses it. fp16 halves the storage (2 MiB per image);
the embedding is LayerNorm output of order 1, well inside fp16 range.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import list_files, read_bytes, write_bytes
from pipeline.runtime.base import SamRuntime
from pipeline.segment.predictor import encode_images
from pipeline.train.autoppn.data import Sample


def load_image(sample: Sample, storage: StorageConfig) -> np.ndarray:
    """HWC uint8 RGB of a training image (EXIF orientation applied); ValueError if it does not match its masks."""
    try:
        with Image.open(io.BytesIO(read_bytes(sample.image_uri, storage))) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{sample.image_uri}: cannot read the training image ({exc})") from None
    if image.shape[:2] != sample.image_hw:
        raise ValueError(f"{sample.image_uri}: image is {image.shape[:2]}, its annotations say {sample.image_hw}")
    return image


def encode_samples(runtime: SamRuntime, samples: Sequence[Sample], storage: StorageConfig) -> torch.Tensor:
    """Embeddings [n,256,64,64] float32 of the samples' images."""
    return encode_images(runtime, [load_image(s, storage) for s in samples]).embeddings


class EmbeddingStore:
    """Precomputed embeddings of one encoder under ``folder/key``."""

    def __init__(self, folder: str, key: str, storage: StorageConfig) -> None:
        self.root = f"{folder.rstrip('/')}/{key}"
        self.storage = storage

    def index(self) -> dict[str, str]:
        """image id → shard URI, for every stored shard."""
        out = {}
        for uri, _ in list_files(self.root, self.storage):
            if uri.endswith(".npz"):
                with np.load(io.BytesIO(read_bytes(uri, self.storage))) as shard:
                    out.update(dict.fromkeys(shard["image_ids"].tolist(), uri))
        return out

    def write(self, image_ids: Sequence[str], embeddings: torch.Tensor) -> str:
        digest = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]
        uri = f"{self.root}/shard-{digest}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, image_ids=np.array(image_ids), embeddings=embeddings.cpu().numpy().astype(np.float16))
        write_bytes(uri, buffer.getvalue(), self.storage)
        return uri

    def read(self, uri: str) -> dict[str, np.ndarray]:
        """image id → [256,64,64] float16 embedding, for one shard."""
        with np.load(io.BytesIO(read_bytes(uri, self.storage))) as shard:
            return dict(zip(shard["image_ids"].tolist(), shard["embeddings"], strict=True))


def missing_chunks(samples: Sequence[Sample], stored: dict[str, str], shard_size: int) -> list[list[Sample]]:
    """The samples without a stored embedding, in shards of ``shard_size``."""
    todo = [s for s in samples if s.image_id not in stored]
    return [todo[i : i + shard_size] for i in range(0, len(todo), shard_size)]


def precompute_shard(
    runtime: SamRuntime, store: EmbeddingStore, samples: Sequence[Sample], batch_size: int, storage: StorageConfig
) -> str:
    """Encodes one shard's images (``batch_size`` per encoder call) and writes it; returns its URI."""
    parts = [encode_samples(runtime, samples[i : i + batch_size], storage) for i in range(0, len(samples), batch_size)]
    return store.write([s.image_id for s in samples], torch.cat(parts))


def stored_batches(
    store: EmbeddingStore, shards: Sequence[str], by_id: dict[str, Sample], batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[list[Sample], torch.Tensor]]:
    """Shuffled batches from precomputed shards: shard order and images within a shard are shuffled each call."""
    for k in rng.permutation(len(shards)):
        stored = store.read(shards[k])
        ids = [i for i in stored if i in by_id]
        ids = [ids[j] for j in rng.permutation(len(ids))]
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            yield [by_id[i] for i in chunk], torch.from_numpy(np.stack([stored[i] for i in chunk])).float()
