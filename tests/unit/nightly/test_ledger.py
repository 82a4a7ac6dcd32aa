"""The nightly ledger: recorded per fingerprint, rewritten atomically with compare-and-swap, runs kept in order."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.config.sections import StorageConfig
from pipeline.nightly.ledger import LedgerConflictError, read_ledger, write_ledger


def _images(*ids: str) -> pa.Table:
    return pa.table({"image_id": list(ids), "status": ["labeled"] * len(ids)})


def test_runs_accumulate_and_are_read_back(tmp_path):
    root, storage = str(tmp_path), StorageConfig()
    ledger = read_ledger(root, storage)
    assert set(ledger.labeled("fp").to_pylist()) == set() and ledger.current_fingerprint() is None
    write_ledger(root, storage, ledger.with_run(_images("a", "b"), "fp", {"run_id": "r1", "fingerprint": "fp"}))
    ledger = read_ledger(root, storage)
    write_ledger(root, storage, ledger.with_run(_images("c"), "fp", {"run_id": "r2", "fingerprint": "fp"}))
    ledger = read_ledger(root, storage)
    assert (
        set(ledger.labeled("fp").to_pylist()) == {"a", "b", "c"} and set(ledger.labeled("other").to_pylist()) == set()
    )
    assert [r["run_id"] for r in ledger.runs] == ["r1", "r2"] and ledger.current_fingerprint() == "fp"


def test_recording_a_run_again_replaces_it_and_another_run_cannot_record_an_image_twice(tmp_path):
    root, storage = str(tmp_path), StorageConfig()
    ledger = read_ledger(root, storage).with_run(_images("a", "b"), "fp", {"run_id": "r1", "fingerprint": "fp"})
    again = ledger.with_run(_images("a", "b"), "fp", {"run_id": "r1", "fingerprint": "fp"})
    assert again.entries.num_rows == 2 and len(again.runs) == 1
    with pytest.raises(LedgerConflictError, match="already labeled by run r1"):
        ledger.with_run(_images("b", "c"), "fp", {"run_id": "r2", "fingerprint": "fp"})
    relabeled = ledger.with_run(_images("a", "b"), "fp2", {"run_id": "r3", "fingerprint": "fp2"})
    assert set(relabeled.labeled("fp2").to_pylist()) == {"a", "b"} and relabeled.current_fingerprint() == "fp2"


def test_a_stale_writer_cannot_overwrite_a_newer_ledger(tmp_path):
    root, storage = str(tmp_path), StorageConfig()
    write_ledger(root, storage, read_ledger(root, storage).with_run(_images("a"), "fp", {"run_id": "r1"}))
    first, second = read_ledger(root, storage), read_ledger(root, storage)
    write_ledger(root, storage, first.with_run(_images("b"), "fp", {"run_id": "r2"}))
    with pytest.raises(LedgerConflictError, match="changed by another run"):
        write_ledger(root, storage, second.with_run(_images("c"), "fp", {"run_id": "r3"}))
    assert set(read_ledger(root, storage).labeled("fp").to_pylist()) == {"a", "b"}
