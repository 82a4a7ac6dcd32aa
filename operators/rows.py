"""Per-row isolation, shared by every operator: an image that fails becomes an error row (``error_stage``,
``error_type``, ``error_message``) and the other images of the batch go on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from pipeline.redact import redact
from pipeline.schema import ERROR_MESSAGE, ERROR_STAGE, ERROR_TYPE

MAX_MESSAGE_CHARS = 500
T = TypeVar("T")
log = logging.getLogger(__name__)


def one_line(text: str) -> str:
    """``text`` on one line, secrets redacted, at most ``MAX_MESSAGE_CHARS`` characters."""
    return redact(" ".join(text.split()))[:MAX_MESSAGE_CHARS]


def mark_error(errors: dict[str, np.ndarray], i: int, stage: str, error_type: str, message: str) -> None:
    """Makes row ``i`` an error row of ``stage`` (``errors`` as :func:`pipeline.schema.error_columns` returns)."""
    errors[ERROR_STAGE][i] = stage
    errors[ERROR_TYPE][i] = error_type
    errors[ERROR_MESSAGE][i] = one_line(message)


def run_rows(
    stage: str, rows: Sequence[int], work: Callable[[list[int]], list[T]], errors: dict[str, np.ndarray]
) -> dict[int, T]:
    """``work`` on all ``rows`` at once (one result per row, in order); when that raises, row by row, each row
    that still fails marked an error of ``stage`` with its exception's type and first line. Returns the results
    of the rows that succeeded."""
    rows = list(rows)
    try:
        return dict(zip(rows, work(rows), strict=True))
    except Exception:
        log.exception("%s batch failed; retrying its images one by one", stage)
    results: dict[int, T] = {}
    for i in rows:
        try:
            results[i] = work([i])[0]
        except Exception as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            mark_error(errors, i, stage, type(e).__name__, first_line)
    return results
