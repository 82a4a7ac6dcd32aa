"""The consolidated view over all nightly runs, and the pointer to the latest complete run.

Layout under the output root::

    view/<settings>/annotations/run=<run_id>/part-<h>.parquet   one row per mask, every committed run of <settings>
    view/<settings>/errors/run=<run_id>/part-<h>.parquet        one row per image that could not be labeled
    view/<settings>/images/run=<run_id>/part-<h>.parquet        one row per image done
    latest.json                                                  the latest complete run and the current view

``<settings>`` is the run id that the labeling settings hash to (model, weights, prompts, thresholds), so a
changed model or threshold gets a view of its own and a reader never sees two labelings of one image. A plain
``pyarrow.dataset.dataset(".../view/<settings>/annotations")`` or ``pandas.read_parquet`` gives exactly one row per
mask across all runs (pandas adds the ``run`` partition column). Parts are copies of the runs' committed parts,
under the same names, made only after a run's commit; republishing a run rewrites the same files and removes any
others in its partition, so it is idempotent.
"""

from __future__ import annotations

import json
import time

from pipeline.config.sections import StorageConfig
from pipeline.io import storage as st
from pipeline.io.run_output import ANNOTATIONS, ERRORS, IMAGES

VIEW_DIR, LATEST_NAME = "view", "latest.json"
VIEW_TABLES = (ANNOTATIONS, ERRORS, IMAGES)


def view_uri(root_uri: str, settings_id: str) -> str:
    return st.join_uri(root_uri, VIEW_DIR, settings_id)


def publish_run(run_uri: str, view: str, run_id: str, storage: StorageConfig) -> int:
    """Mirrors the committed run's parts into ``view`` (partition ``run=<run_id>``); returns the files copied."""
    copied = 0
    for table in VIEW_TABLES:
        partition = st.join_uri(view, table, f"run={run_id}")
        sources = _parquet_files(st.join_uri(run_uri, table), storage)
        for name, uri in sources.items():
            st.copy_file(uri, st.join_uri(partition, name), storage)
            copied += 1
        for name, uri in _parquet_files(partition, storage).items():
            if name not in sources:
                st.delete(uri, storage)
    return copied


def write_latest(root_uri: str, storage: StorageConfig, pointer: dict) -> None:
    """Points ``latest.json`` at a complete run (one atomic write)."""
    document = {**pointer, "updated_at": time.time()}
    st.write_bytes(st.join_uri(root_uri, LATEST_NAME), json.dumps(document, indent=2).encode(), storage)


def read_latest(root_uri: str, storage: StorageConfig) -> dict | None:
    uri = st.join_uri(root_uri, LATEST_NAME)
    return json.loads(st.read_bytes(uri, storage)) if st.exists(uri, storage) else None


def _parquet_files(folder: str, storage: StorageConfig) -> dict[str, str]:
    if not st.exists(folder, storage):
        return {}
    files = st.list_files(folder, storage, recursive=False)
    return {uri.rsplit("/", 1)[-1]: uri for uri, _ in files if uri.endswith(".parquet")}
