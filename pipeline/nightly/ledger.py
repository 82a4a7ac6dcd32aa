"""The ledger of a nightly output root: which image was labeled under which fingerprint, by which run.

One object, ``<root>/ledger.parquet``: rows ``(image_id, fingerprint, run_id, status)``, one per image and labeling
fingerprint, plus the list of committed runs in the file's metadata (key ``samlabel.runs``). It is rewritten whole
as the last step of a night, with a compare-and-swap on the version read at the start of the night (a single
conditional PUT on S3, a temp file + rename under a guard locally): a crash leaves the previous ledger, and a run
that lost its lock cannot overwrite what another run recorded meanwhile.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io import conditional as cas
from pipeline.io import storage as st

LEDGER_NAME = "ledger.parquet"
RUNS_KEY = b"samlabel.runs"
FINGERPRINT = "fingerprint"
SCHEMA = pa.schema(
    [(col.IMAGE_ID, pa.string()), (FINGERPRINT, pa.string()), (col.RUN_ID, pa.string()), (col.STATUS, pa.string())]
)


class LedgerConflictError(RuntimeError):
    """The ledger changed since this night read it (another run wrote it), or a run would record an image twice."""


@dataclass(frozen=True)
class Ledger:
    entries: pa.Table = field(default_factory=SCHEMA.empty_table)
    runs: tuple[dict, ...] = ()
    """Committed runs in order: ``{run_id, fingerprint, run_uri, committed_at, counts}``."""
    version: str | None = None
    """Version of the stored object this was read from (None: there was none)."""

    def labeled(self, fingerprint: str) -> pa.ChunkedArray:
        """Image ids recorded under ``fingerprint`` (labeled or in errors: either way done for it), as Arrow strings:
        a ledger of millions of images stays compact."""
        return self.entries.filter(pc.equal(self.entries[FINGERPRINT], fingerprint))[col.IMAGE_ID]

    def run_ids(self) -> frozenset[str]:
        return frozenset(r["run_id"] for r in self.runs)

    def current_fingerprint(self) -> str | None:
        """The fingerprint of the last committed run: what the consolidated view currently shows."""
        return self.runs[-1]["fingerprint"] if self.runs else None

    def with_run(self, images: pa.Table, fingerprint: str, run: dict) -> Ledger:
        """This ledger plus a committed run's ``images`` table; recording the same run again replaces it."""
        run_id = run["run_id"]
        kept = self.entries.filter(pc.not_equal(self.entries[col.RUN_ID], run_id))
        ids = images[col.IMAGE_ID]
        already = kept.filter(
            pc.and_(pc.equal(kept[FINGERPRINT], fingerprint), pc.is_in(kept[col.IMAGE_ID], value_set=ids))
        )
        if already.num_rows:
            first = already.slice(0, 1).to_pylist()[0]
            raise LedgerConflictError(
                f"{already.num_rows} images of run {run_id} were already labeled by run {first[col.RUN_ID]} "
                f"(e.g. {first[col.IMAGE_ID]!r}); not recording them twice"
            )
        added = pa.table(
            {
                col.IMAGE_ID: ids,
                FINGERPRINT: pa.repeat(pa.scalar(fingerprint, pa.string()), images.num_rows),
                col.RUN_ID: pa.repeat(pa.scalar(run_id, pa.string()), images.num_rows),
                col.STATUS: images[col.STATUS],
            },
            schema=SCHEMA,
        )
        runs = tuple(r for r in self.runs if r["run_id"] != run_id) + (run,)
        return Ledger(pa.concat_tables([kept, added]), runs, self.version)


def read_ledger(root_uri: str, storage: StorageConfig) -> Ledger:
    """The stored ledger, or an empty one when the root has none yet."""
    stored = cas.read_versioned(st.join_uri(root_uri, LEDGER_NAME), storage)
    if stored is None:
        return Ledger()
    table = pq.read_table(pa.BufferReader(stored.data))
    runs = json.loads((table.schema.metadata or {}).get(RUNS_KEY, b"[]"))
    return Ledger(table.replace_schema_metadata(None).cast(SCHEMA), tuple(runs), stored.version)


def write_ledger(root_uri: str, storage: StorageConfig, ledger: Ledger) -> None:
    """Stores ``ledger`` in one atomic write, only if the stored one is still the version it was read from."""
    table = ledger.entries.sort_by([(col.IMAGE_ID, "ascending"), (FINGERPRINT, "ascending")])
    table = table.replace_schema_metadata({RUNS_KEY: json.dumps(list(ledger.runs), sort_keys=True).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = st.join_uri(root_uri, LEDGER_NAME)
    if ledger.version is None:
        written = cas.create_if_absent(uri, buffer.getvalue(), storage)
    else:
        written = cas.replace_if_version(uri, buffer.getvalue(), ledger.version, storage)
    if not written:
        raise LedgerConflictError(f"{uri} was changed by another run since this run read it; rerun to resume")
