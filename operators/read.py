"""Read operator: each row's ``image_uri`` → the stored file's bytes, or an error row. CPU task, I/O bound.

Columns read: ``image_uri``; ``error_stage`` / ``error_type`` / ``error_message`` when present (a row where any
is set failed earlier and is not read).
Columns written: ``image_bytes`` (the file as stored; empty on error rows), the three error columns (None when
the row is fine) and ``seconds_read`` (float64, time spent on the row). Every other column passes through
unchanged and every input row gives exactly one output row.
Error types at stage ``read``: ``missing`` (no such file or object), ``too_large`` (over ``max_file_bytes``, not
read), ``read_failed`` (permission denied, a folder, an unsupported URI, or a storage error that persisted through
the client's retries, ``StorageConfig.max_attempts``). Resources: one CPU per task, memory of one batch of files.
"""

from __future__ import annotations

import time

import numpy as np

from operators.rows import mark_error
from pipeline.config.sections import StorageConfig
from pipeline.io.storage import FileTooLargeError, describe_error, read_bytes
from pipeline.schema import (
    IMAGE_BYTES,
    IMAGE_URI,
    error_columns,
    has_error,
    seconds_column,
)

STAGE = "read"


def read_images(batch: dict[str, np.ndarray], storage: StorageConfig, max_file_bytes: int) -> dict[str, np.ndarray]:
    """Read every row's ``image_uri`` into ``image_bytes`` (see the module doc); one bad file never fails the batch."""
    if IMAGE_URI not in batch:
        raise ValueError(f"read_images needs column {IMAGE_URI!r}, got columns {sorted(batch)}")
    uris = batch[IMAGE_URI]
    n = len(uris)
    errors = error_columns(batch, n)
    data = np.full(n, b"", dtype=object)
    seconds = np.zeros(n)
    for i, uri in enumerate(uris):
        if has_error(errors, i):
            continue
        start = time.perf_counter()
        try:
            data[i] = read_bytes(str(uri), storage, max_bytes=max_file_bytes)
        except Exception as exc:  # whatever one file does becomes that file's error row
            mark_error(errors, i, STAGE, _error_type(exc), _message(exc))
        seconds[i] = time.perf_counter() - start
    return {**batch, IMAGE_BYTES: data, **errors, seconds_column(STAGE): seconds}


def _error_type(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, FileTooLargeError):
        return "too_large"
    return "read_failed"


def _message(exc: Exception) -> str:
    # Our own storage errors already name the URI in one line; keep the type name only for foreign ones.
    return str(exc) if isinstance(exc, (FileNotFoundError, FileTooLargeError)) else describe_error(exc)
