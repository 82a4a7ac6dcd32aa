"""Range rules declared on config fields: ``pred_iou_thresh: Fraction = 0.88``. Loading a config checks every
annotated field and names the key of a value out of range (:mod:`pipeline.config.loading`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class InRange:
    """Allowed values ``low <= v <= high`` (``low < v`` when ``low_open``); None leaves that side open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range ("must be ..."), or None when it is allowed."""
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and value > self.high
        if not (below or above):
            return None
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            if self.low_open:
                return "must be positive" if self.low == 0 else f"must be above {low}"
            return "must not be negative" if self.low == 0 else f"must be at least {low}"
        if self.low is None:
            return f"must be at most {high}"
        return f"must be in ({low}, {high}]" if self.low_open else f"must be between {low} and {high}"


Fraction = Annotated[float, InRange(0.0, 1.0)]
"""A threshold or share in [0, 1]."""
AtLeastOne = Annotated[int, InRange(1)]
"""A count or size of at least 1."""
NonNegative = Annotated[int, InRange(0)]
"""A count or size of at least 0."""
NonNegativeFloat = Annotated[float, InRange(0.0)]
"""A distance or area of at least 0."""
Positive = Annotated[float, InRange(0.0, low_open=True)]
"""A rate above 0."""
UnitInterval = Annotated[float, InRange(0.0, 1.0, low_open=True)]
"""A share in (0, 1]."""


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""
