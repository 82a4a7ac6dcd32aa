"""The Ray Data sink of the labeling job: each write task writes one part (see ``pipeline.io.run_output``)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from ray.data.block import Block, BlockAccessor
from ray.data.datasource.datasink import Datasink, WriteResult

from pipeline.config.sections import StorageConfig
from pipeline.io.run_output import write_part


class LabelSink(Datasink[dict]):
    """Writes annotations/, errors/ and images/ parts; ``totals`` holds the summed counts after the write.

    Rows reaching the sink are one per image, so ``min_rows_per_write`` is the number of images per part.
    """

    def __init__(self, output_uri: str, storage: StorageConfig, min_rows_per_write: int = 32) -> None:
        self.output_uri = output_uri
        self.storage = storage
        self._min_rows = min_rows_per_write
        self.totals: dict[str, float] = {}

    @property
    def min_rows_per_write(self) -> int:
        return self._min_rows

    def write(self, blocks: Iterable[Block], ctx: object) -> dict:
        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return {}
        return write_part(self.output_uri, self.storage, pa.concat_tables(tables, promote_options="permissive"))

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        totals: dict[str, float] = {}
        for counts in write_result.write_returns:
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        self.totals = totals
