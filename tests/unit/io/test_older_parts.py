"""Parts written before a column was added to the output (the mask classifier's class_score, masks_unnamed) still
read, count and commit: the new columns come back as nulls."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as col
from pipeline.config.sections import StorageConfig
from pipeline.io.run_output import ANNOTATIONS, IMAGES, read_part
from pipeline.io.verify import verify_parts

STORAGE = StorageConfig()


def test_an_older_part_reads_with_nulls_and_is_counted(tmp_path) -> None:
    (tmp_path / IMAGES).mkdir()
    (tmp_path / ANNOTATIONS).mkdir()
    images = pa.table(
        {
            col.IMAGE_ID: ["a.jpg", "b.jpg"],
            col.STATUS: ["labeled", "labeled"],
            col.PROMPTS_DROPPED: pa.array([0, 0], pa.int64()),
            col.MASKS_DROPPED: pa.array([1, 0], pa.int64()),
            "num_annotations": pa.array([1, 1], pa.int64()),
        }
    )
    pq.write_table(images, tmp_path / IMAGES / "part-1.parquet")
    annotations = pa.table({col.ANNOTATION_ID: pa.array([1, 2], pa.int64()), col.SCORE: pa.array([0.5, 0.7])})
    pq.write_table(annotations, tmp_path / ANNOTATIONS / "part-1.parquet")
    table = read_part(str(tmp_path / ANNOTATIONS / "part-1.parquet"), STORAGE, [col.CLASS_SCORE, col.ANNOTATION_ID])
    assert table.column_names == [col.CLASS_SCORE, col.ANNOTATION_ID]
    assert table[col.CLASS_SCORE].to_pylist() == [None, None] and table[col.CLASS_SCORE].type == pa.float32()
    counts = verify_parts(str(tmp_path), STORAGE, ["part-1.parquet"], pa.array(["a.jpg", "b.jpg"]))
    assert counts["masks_dropped"] == 1 and counts["masks_unnamed"] == 0 and counts["annotations"] == 2
