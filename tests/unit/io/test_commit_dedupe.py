"""Commit-time de-duplication: an image completed by two parts (a retried task regrouped, a zombie writer) ends up
once in every table, the same copy whichever order the parts were written in, and the commit then verifies."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from pipeline import schema as col
from pipeline.config.sections import OutputConfig, StorageConfig
from pipeline.io.commit import IncompleteRunError, commit_run
from pipeline.io.run_output import write_part


def _records(image_ids: list[str], masks: int = 2, failed: tuple[str, ...] = ()) -> pa.Table:
    rows = []
    for image_id in image_ids:
        error = image_id in failed
        k = 0 if error else masks
        rows.append(
            {
                col.IMAGE_ID: image_id,
                col.IMAGE_URI: f"/in/{image_id}",
                col.COCO_IMAGE_ID: abs(hash(image_id)) % 1000,
                col.IMAGE_WIDTH: 8,
                col.IMAGE_HEIGHT: 8,
                col.STATUS: "error" if error else "labeled",
                col.ERROR_STAGE: "decode" if error else None,
                col.ERROR_TYPE: "truncated" if error else None,
                col.ERROR_MESSAGE: "cut short" if error else None,
                col.ANNOTATION_ID: [hash((image_id, j)) % 10**12 for j in range(k)],
                col.CATEGORY_ID: [1] * k,
                col.CATEGORY_NAME: ["object"] * k,
                col.BBOX_XYWH: [[0.0, 0.0, 1.0, 1.0]] * k,
                col.AREA: [1] * k,
                col.RLE_COUNTS: ["0"] * k,
                col.PREDICTED_IOU: [0.9] * k,
                col.STABILITY_SCORE: [0.9] * k,
                col.SCORE: [0.9] * k,
                col.PROMPT_BOX_XYXY: [None] * k,
                col.PROMPT_POINTS: [None] * k,
                col.PROMPT_TYPE: "grid",
                col.MODEL: "mini-l",
                col.RUN_ID: "r",
            }
        )
    return pa.Table.from_pylist(rows)


def _commit(out, expected) -> dict:
    info = {"run_id": "r", "model": {"name": "mini-l"}}
    return commit_run(
        str(out),
        StorageConfig(),
        expected_image_ids=pa.array(sorted(set(expected)), pa.string()),
        categories=[{"id": 1, "name": "object"}],
        output=OutputConfig(report=False),
        run_info=info,
    )


def _rows(path, columns) -> list:
    table = pads.dataset(str(path), format="parquet").to_table(columns=columns)
    return sorted(map(tuple, zip(*(table[c].to_pylist() for c in columns), strict=True)))


@pytest.mark.parametrize("order", [0, 1])
def test_images_written_by_two_parts_are_kept_once(tmp_path, order):
    out = tmp_path / "out"
    groups = [["a", "b", "c"], ["c", "d"], ["a", "d", "e"]]  # c, a and d each done twice, in other groupings
    for group in groups if order == 0 else groups[::-1]:
        write_part(str(out), StorageConfig(), _records(group, failed=("e",)))
    counts = _commit(out, "abcde")
    assert counts["duplicates_removed"] == 3 and counts["images"] == 5 and counts["errors"] == 1
    assert _rows(out / "images", ["image_id"]) == [(i,) for i in "abcde"]
    assert _rows(out / "errors", ["image_id"]) == [("e",)]
    annotations = _rows(out / "annotations", ["image_id", "annotation_id"])
    assert len(annotations) == len(set(annotations)) == 8  # 4 labeled images × 2 masks, none twice
    assert (out / "_SUCCESS").exists()


def test_dedupe_is_deterministic_whatever_the_write_order(tmp_path):
    names = []
    for order in (0, 1):
        out = tmp_path / f"out{order}"
        groups = [["a", "b"], ["b", "c"]]
        for group in groups if order == 0 else groups[::-1]:
            write_part(str(out), StorageConfig(), _records(group))
        _commit(out, "abc")
        names.append(sorted(p.name for p in (out / "images").iterdir()))
    assert names[0] == names[1]


def test_a_missing_image_still_fails_the_commit(tmp_path):
    out = tmp_path / "out"
    write_part(str(out), StorageConfig(), _records(["a", "b"]))
    with pytest.raises(IncompleteRunError, match="1 input images have no result"):
        _commit(out, "abc")
    assert not (out / "_SUCCESS").exists()
