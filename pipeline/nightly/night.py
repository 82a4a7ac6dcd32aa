"""One night over a growing input: label what the ledger does not hold yet into ``runs/<run_id>/``, then publish.

Under the output root::

    _lock.json           the lock with expiry (pipeline.nightly.lock)
    _pending.json        the run in progress: {run_id, fingerprint}; a rerun resumes it
    runs/<run_id>/       one labeling run, in the label job's layout (annotations/, errors/, images/, coco.json,
                         run.json, _SUCCESS), resumable by the label job's own mechanism
    view/<settings>/     the consolidated view (pipeline.nightly.view)
    latest.json          the latest complete run and the current view
    ledger.parquet       which image was labeled under which fingerprint, by which run (written last)

A night: take the lock; read the ledger; refuse (before any work) a fingerprint other than the ledger's current
one unless ``relabel``; list the input and keep the images without a ledger row for this fingerprint; resume the
pending run if there is one (its folder keeps what it finished), else start one; label through the label job's
code path; then publish the run to the view, point ``latest.json`` at it and write the ledger, last. A run that
committed but was not recorded (a crash after ``_SUCCESS``) is adopted without relabeling anything.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa

from pipeline import schema as col
from pipeline.config.sections import LabelConfig, StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import IMAGES, RUN_JSON, read_table
from pipeline.labeling.inputs import remaining
from pipeline.labeling.output import OpenedOutput, open_output
from pipeline.labeling.prepare import Labeling
from pipeline.labeling.run import label_output
from pipeline.nightly.ledger import Ledger, read_ledger, write_ledger
from pipeline.nightly.lock import OutputLock
from pipeline.nightly.view import publish_run, view_uri, write_latest

PENDING_NAME, RUNS_DIR = "_pending.json", "runs"


class FingerprintChangedError(ValueError):
    """The settings differ from those the output root was labeled with, and no relabel was asked for."""


class NightFailedError(RuntimeError):
    """The night failed after work started; rerunning resumes it."""


@dataclass(frozen=True)
class NightOptions:
    root_uri: str
    relabel: bool = False
    """Label every image not labeled under the current settings, even if the root holds other settings."""
    lock_ttl_s: float = 900.0
    limit: int | None = None
    """At most this many new images tonight (sorted by image id)."""


def night_config(cfg: LabelConfig) -> tuple[LabelConfig, int | None]:
    """The config to plan with (``input.limit`` cleared) and the limit: a night applies it after the ledger."""
    return dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, limit=None)), cfg.input.limit


def run_night(labeling: Labeling, options: NightOptions, started_at: float) -> dict:
    """Runs one night under the root's lock and returns its summary (``runs``, ``new_images``, ``view``, ...).

    Raises LockHeldError (another run is working), FingerprintChangedError / OutputConflictError / OSError before
    any work, and NightFailedError once work has started.
    """
    storage, root = labeling.cfg.storage, options.root_uri
    with OutputLock(root, storage, options.lock_ttl_s) as lock:
        ledger = read_ledger(root, storage)
        pending = _pending_run(root, labeling, ledger, options.relabel)
        runs: list[dict] = []
        while True:
            todo = _new_images(labeling, ledger, options.limit)
            if pending is None and todo.num_rows == 0:
                break
            run_id = pending or _new_run_id(labeling)
            if pending is None:
                _write_json(st.join_uri(root, PENDING_NAME), {"run_id": run_id, **_fp(labeling)}, storage)
            opened = open_output(labeling, st.join_uri(root, RUNS_DIR, run_id), run_id)
            try:
                summary = _label_or_adopt(labeling, opened, todo, started_at, resumed=pending is not None)
                ledger = _finalize(labeling, root, run_id, ledger, lock)
            except Exception as e:
                raise NightFailedError(f"night failed in run {run_id}") from e
            runs.append(summary)
            pending = None
            if not summary["adopted"]:
                break
    return {
        "status": "complete" if runs else "nothing_new",
        "runs": runs,
        "new_images": sum(r["attempt_images"] for r in runs),
        "ledger_images": len(ledger.labeled(labeling.settings_fingerprint)),
        "latest_run": ledger.runs[-1]["run_id"] if ledger.runs else None,
        "view": view_uri(root, labeling.settings_id),
    }


def _pending_run(root: str, labeling: Labeling, ledger: Ledger, relabel: bool) -> str | None:
    """The run id to resume, if any; refuses other settings than the root's unless ``relabel``."""
    fp = labeling.settings_fingerprint
    current = ledger.current_fingerprint()
    if current not in (None, fp) and not relabel:
        raise FingerprintChangedError(
            f"{root} was labeled with other settings (settings {current[:16]}, now {fp[:16]}); pass --relabel to "
            f"label every image again into a new view, or run with the settings of {ledger.runs[-1]['run_id']}"
        )
    uri = st.join_uri(root, PENDING_NAME)
    if not st.exists(uri, labeling.cfg.storage):
        return None
    pending = json.loads(st.read_bytes(uri, labeling.cfg.storage))
    if pending["run_id"] in ledger.run_ids():  # recorded, only the marker's removal was missed
        return None
    if pending["fingerprint"] != fp:
        if relabel:
            return None  # that run is abandoned; its folder stays, unrecorded
        raise FingerprintChangedError(
            f"{root} has an unfinished run {pending['run_id']} with other settings; rerun it with its own "
            f"settings, or pass --relabel to abandon it"
        )
    return str(pending["run_id"])


def _new_images(labeling: Labeling, ledger: Ledger, limit: int | None) -> pa.Table:
    todo = remaining(labeling.plan.table, ledger.labeled(labeling.settings_fingerprint))
    return todo.slice(0, limit) if limit is not None else todo


def _label_or_adopt(
    labeling: Labeling, opened: OpenedOutput, todo: pa.Table, started_at: float, resumed: bool
) -> dict:
    run_id = opened.run_id
    if opened.state.complete:
        info = json.loads(st.read_bytes(st.join_uri(opened.cfg.output.uri, RUN_JSON), labeling.cfg.storage))
        print(f"samlabel: run {run_id} had committed but was not recorded; recording it")
        return {"run_id": run_id, "counts": info["counts"], "attempt_images": 0, "adopted": True, "resumed": True}
    result = label_output(labeling, opened, todo, started_at)
    print(result.summary_line())
    return {**result.to_json(), "adopted": False, "resumed": resumed}


def _finalize(labeling: Labeling, root: str, run_id: str, ledger: Ledger, lock: OutputLock) -> Ledger:
    """Publishes a committed run to the view, points latest.json at it, then writes the ledger (last)."""
    storage = labeling.cfg.storage
    run_uri = st.join_uri(root, RUNS_DIR, run_id)
    images = read_table(run_uri, IMAGES, storage, columns=[col.IMAGE_ID, col.STATUS])
    run_json = json.loads(st.read_bytes(st.join_uri(run_uri, RUN_JSON), storage))
    view = view_uri(root, labeling.settings_id)
    lock.check()
    publish_run(run_uri, view, run_id, storage)
    record = {"run_id": run_id, "run_uri": run_uri, "view": view, "counts": run_json["counts"], **_fp(labeling)}
    write_latest(root, storage, record)
    lock.check()
    updated = ledger.with_run(images, labeling.settings_fingerprint, {**record, "recorded_at": time.time()})
    write_ledger(root, storage, updated)
    st.delete(st.join_uri(root, PENDING_NAME), storage)
    return read_ledger(root, storage)


def _new_run_id(labeling: Labeling) -> str:
    """Sortable by start time; the settings id says what labeled it; the suffix keeps ids unique."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{labeling.settings_id[:8]}-{uuid.uuid4().hex[:6]}"


def _fp(labeling: Labeling) -> dict:
    return {"fingerprint": labeling.settings_fingerprint, "settings_id": labeling.settings_id}


def _write_json(uri: str, document: dict, storage: StorageConfig) -> None:
    st.write_bytes(uri, json.dumps(document, indent=2).encode(), storage)
