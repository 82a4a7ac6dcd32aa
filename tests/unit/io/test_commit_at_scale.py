"""The commit of a run of a few thousand synthetic images: it reads the parts one at a time and never holds the
run's annotations in Python objects; COCO comes as one file or as shards that load with pycocotools one by one and
merge into exactly the single file."""

from __future__ import annotations

import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pycocotools.coco import COCO

from jobs import export
from pipeline.bench.scale import image_ids, write_synthetic_parts
from pipeline.config.sections import OutputConfig, StorageConfig
from pipeline.io import commit, run_output
from pipeline.io.coco import build_coco
from pipeline.io.commit import commit_run
from pipeline.io.run_output import ANNOTATIONS, IMAGES, read_table

IMAGES_IN_RUN, MASKS, PER_PART = 3000, 8, 200
CATEGORIES = [{"id": 1, "name": "object", "supercategory": ""}]
INFO = {"run_id": "scale", "model": {"name": "mini-l"}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    ids = image_ids(IMAGES_IN_RUN)
    write_synthetic_parts(str(folder), StorageConfig(), ids, MASKS, PER_PART)
    return folder, pa.array(ids, pa.string())


def _copy(src, dst):
    for sub in (ANNOTATIONS, IMAGES):
        (dst / sub).mkdir(parents=True)
        for part in (src / sub).iterdir():
            (dst / sub / part.name).write_bytes(part.read_bytes())
    return dst


def _commit(folder, ids, **output):
    return commit_run(
        str(folder),
        StorageConfig(),
        expected_image_ids=ids,
        categories=CATEGORIES,
        output=OutputConfig(report=False, **output),
        run_info=INFO,
    )


def _traced_commit(folder, ids) -> tuple[dict, int]:
    tracemalloc.start()
    try:
        counts = _commit(folder, ids)
        return counts, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_commit_reads_one_part_at_a_time_and_its_memory_does_not_grow_with_the_run(
    finished_run, tmp_path, monkeypatch
):
    src, ids = finished_run
    out = _copy(src, tmp_path / "out")
    small = tmp_path / "small"
    write_synthetic_parts(str(small), StorageConfig(), ids.to_pylist()[: IMAGES_IN_RUN // 3], MASKS, PER_PART)
    reads: list[int] = []
    original = run_output.read_part

    def counting_read(uri, storage, columns):
        table = original(uri, storage, columns)
        reads.append(table.num_rows)
        return table

    for module in ("run_output", "commit", "verify", "coco"):
        monkeypatch.setattr(f"pipeline.io.{module}.read_part", counting_read)
    monkeypatch.setattr(run_output, "read_table", None)  # reading a whole output folder at once would fail

    _, small_peak = _traced_commit(small, ids[: IMAGES_IN_RUN // 3])
    counts, peak = _traced_commit(out, ids)

    assert counts["images"] == counts["labeled"] == IMAGES_IN_RUN and counts["annotations"] == IMAGES_IN_RUN * MASKS
    assert reads and max(reads) <= PER_PART * MASKS  # never more than one part's rows per read
    # Three times the images and masks, about the same peak of Python objects (the old commit built every
    # annotation as a dict: its peak tripled with the run).
    assert peak < 1.5 * small_peak, (peak, small_peak)


def test_single_file_equals_the_document_built_in_memory_and_loads(finished_run, tmp_path):
    src, ids = finished_run
    out = _copy(src, tmp_path / "out")
    _commit(out, ids)
    storage = StorageConfig()
    images = read_table(str(out), IMAGES, storage)
    annotations = read_table(str(out), ANNOTATIONS, storage)
    info = {"description": "samlabel", "model": "mini-l", "run_id": "scale"}
    expected = json.dumps(build_coco(images, annotations, CATEGORIES, "rle", info), separators=(",", ":"))
    assert (out / "coco.json").read_text() == expected
    coco = COCO(str(out / "coco.json"))
    assert len(coco.getImgIds()) == IMAGES_IN_RUN and len(coco.getAnnIds()) == IMAGES_IN_RUN * MASKS


def test_large_runs_write_shards_that_load_and_merge_into_the_single_file(finished_run, tmp_path):
    src, ids = finished_run
    single, sharded = _copy(src, tmp_path / "single"), _copy(src, tmp_path / "sharded")
    _commit(single, ids)
    _commit(sharded, ids, coco_max_images=1000)

    assert not (sharded / "coco.json").exists()
    index = json.loads((sharded / "coco" / "index.json").read_text())
    assert len(index["shards"]) == IMAGES_IN_RUN // PER_PART
    assert (index["images"], index["annotations"]) == (IMAGES_IN_RUN, IMAGES_IN_RUN * MASKS)
    image_ids_seen, annotation_ids_seen = set(), set()
    for shard in index["shards"]:
        coco = COCO(str(sharded / "coco" / shard["file"]))
        assert len(coco.getImgIds()) == shard["images"] and len(coco.getAnnIds()) == shard["annotations"]
        assert image_ids_seen.isdisjoint(coco.getImgIds()) and annotation_ids_seen.isdisjoint(coco.getAnnIds())
        image_ids_seen.update(coco.getImgIds())
        annotation_ids_seen.update(coco.getAnnIds())

    merged = tmp_path / "merged.json"
    assert export.main(["coco", "--run", str(sharded), "--to", str(merged)]) == 0
    assert merged.read_bytes() == (single / "coco.json").read_bytes()
    assert export.main(["coco", "--run", str(single), "--to", str(tmp_path / "x.json")]) == 2  # nothing to merge


def test_a_repeated_annotation_id_fails_the_commit(finished_run, tmp_path, monkeypatch):
    src, ids = finished_run
    out = _copy(src, tmp_path / "out")
    monkeypatch.setattr("pipeline.io.verify.ANNOTATION_IDS_PER_BUCKET", 1000)  # several buckets
    part = sorted((out / ANNOTATIONS).iterdir())[3]
    table = pq.read_table(part)
    first = sorted((out / ANNOTATIONS).iterdir())[0]
    repeated = pq.read_table(first)["annotation_id"][5].as_py()
    column = table["annotation_id"].to_pylist()
    column[0] = repeated
    pq.write_table(
        table.set_column(table.schema.get_field_index("annotation_id"), "annotation_id", pa.array(column, pa.int64())),
        part,
    )
    with pytest.raises(commit.IncompleteRunError, match="annotation ids are not unique"):
        _commit(out, ids)
    assert not (out / "_SUCCESS").exists()
