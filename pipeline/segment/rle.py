"""COCO run-length encoding computed where the masks are: on a GPU only run lengths and scalars reach the host.

COCO RLE reads a [H,W] mask column by column and stores alternating run lengths starting with a run of zeros (0
when the first pixel is set). A mask stored transposed, [W,H] C-contiguous, is that order as it is in memory, so
the runs of K masks [K,W,H] come from one comparison of each pixel with the previous one and one ``nonzero``.
The host turns the lengths into COCO's compressed strings with pycocotools. The code is plain torch and runs on
any device; on a CPU pycocotools' own encoder is faster (:func:`pipeline.segment.masks.encode_rle_transposed`), so
the pipeline uses this path only on GPUs (``ON_DEVICE_TYPES``), and tests run it on the CPU against pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pipeline.segment.masks import masks_to_boxes_xyxy

ON_DEVICE_TYPES = frozenset({"cuda"})
"""Device types whose masks are RL-encoded where they are."""


def encodes_on_device(device: torch.device) -> bool:
    """Whether masks on ``device`` are RL-encoded there (:func:`encode_on_device`) rather than copied to the host."""
    return device.type in ON_DEVICE_TYPES


@dataclass(frozen=True)
class MaskRuns:
    """The COCO run lengths of K masks of one size, concatenated, and their areas and boxes (host memory)."""

    hw: tuple[int, int]
    lengths: np.ndarray
    """[R] uint32, the runs of mask 0, then of mask 1, ...; each mask's first run counts zeros."""
    runs_per_mask: np.ndarray
    """[K] int64."""
    areas: np.ndarray
    """[K] int64 set pixels."""
    boxes_xyxy: np.ndarray
    """[K,4] float32 tight boxes, inclusive pixel indices; zeros for an empty mask."""

    def rles(self) -> list[dict]:
        """COCO compressed RLE dicts ``{"size": [h, w], "counts": str}``, as pycocotools' ``encode`` gives them."""
        if len(self.runs_per_mask) == 0:
            return []
        h, w = self.hw
        bounds = np.cumsum(self.runs_per_mask)[:-1]
        uncompressed = [{"size": [h, w], "counts": runs} for runs in np.split(self.lengths, bounds)]
        rles = mask_utils.frPyObjects(uncompressed, h, w)
        for rle in rles:
            rle["counts"] = rle["counts"].decode("ascii")
        return rles


def run_lengths(masks_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Transposed boolean masks [K,W,H] → (run lengths [R] int64, runs per mask [K] int64), on their device.

    A mask of N = H*W pixels with c value changes along COCO's order (counting a set first pixel as a change from
    0) has c + 1 runs: the changes' positions and N are the runs' ends.
    """
    k = masks_t.shape[0]
    flat = masks_t.reshape(k, -1)
    n = flat.shape[1]
    previous = torch.cat([flat.new_zeros((k, 1)), flat[:, :-1]], dim=1)
    change = flat != previous  # [K,N]
    changes = change.sum(dim=1)  # [K]
    runs_per_mask = changes + 1
    mask_index, position = change.nonzero(as_tuple=True)  # row-major: by mask, then position
    ends = torch.full((len(position) + k,), n, dtype=torch.int64, device=flat.device)
    # Mask m's runs start after those of masks < m, each of which holds one more end (N) than it has changes.
    ends[torch.arange(len(position), device=flat.device) + mask_index] = position
    first = torch.cumsum(runs_per_mask, dim=0) - runs_per_mask
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    starts[first] = 0
    return ends - starts, runs_per_mask


def encode_on_device(
    masks_t: torch.Tensor, rows: np.ndarray | None = None, stream: torch.cuda.Stream | None = None
) -> MaskRuns:
    """Runs, areas and boxes of transposed boolean masks [K,W,H] (the [H,W] masks' column-major layout), or of their
    ``rows``, computed on their device; only those reach the host, through page-locked memory on a GPU.

    ``stream``: a CUDA stream to run on, whose host wait then does not include work queued after ``masks_t`` on the
    current stream. The caller makes sure ``masks_t`` is complete (an event it waited for), since this stream does
    not wait for the current one.
    """
    if stream is None:
        return _encode(masks_t, rows)
    with torch.cuda.stream(stream):
        return _encode(masks_t, rows)


def rle_stream(device: torch.device) -> torch.cuda.Stream | None:
    """The side stream of ``device`` for :func:`encode_on_device` (None off CUDA)."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _STREAMS:
        _STREAMS[index] = torch.cuda.Stream(index)
    return _STREAMS[index]


_STREAMS: dict[int, torch.cuda.Stream] = {}


def _encode(masks_t: torch.Tensor, rows: np.ndarray | None) -> MaskRuns:
    if rows is not None:
        masks_t = masks_t[torch.as_tensor(rows, device=masks_t.device)]
    k, w, h = masks_t.shape
    if k == 0:
        f32, i64 = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        return MaskRuns((h, w), np.zeros(0, np.uint32), i64, i64, f32)
    lengths, runs_per_mask = run_lengths(masks_t)
    areas = masks_t.reshape(k, -1).sum(dim=1)
    boxes_yx = masks_to_boxes_xyxy(masks_t)  # boxes of the transposed masks: (y1, x1, y2, x2)
    boxes = boxes_yx[:, [1, 0, 3, 2]]
    host = [_to_host(t) for t in (lengths.to(torch.int32), runs_per_mask, areas.to(torch.int64), boxes.float())]
    if masks_t.device.type == "cuda":
        torch.cuda.current_stream(masks_t.device).synchronize()
    lengths_h, runs_h, areas_h, boxes_h = (t.numpy() for t in host)
    return MaskRuns((h, w), lengths_h.view(np.uint32), runs_h.astype(np.int64), areas_h, boxes_h.astype(np.float32))


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.device.type == "cpu":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)
