"""Wall-clock seconds per pipeline stage, summed: ``with timer("encode"): ...``; ``timer.seconds["encode"]``.

Stages, in pipeline order: ``read``, ``decode`` (image decode + resize), ``encode``, ``prompts``,
``decode_masks`` (mask decoder), ``filter`` (scores, thresholds, NMS), ``rle`` (upsampling kept masks,
measuring them and RLE), ``write`` (records and Parquet). The cost is one ``perf_counter`` pair per block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("read", "decode", "encode", "prompts", "decode_masks", "filter", "rle", "classify", "write")


class StageTimer:
    """Accumulates seconds per stage name; a disabled timer (``StageTimer.off()``) records nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}

    @staticmethod
    def off() -> StageTimer:
        return StageTimer(enabled=False)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def add(self, other: dict[str, float]) -> None:
        """Adds another timer's ``seconds`` into this one."""
        for stage, value in other.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + value
