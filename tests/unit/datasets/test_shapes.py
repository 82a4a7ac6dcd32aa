"""The generated shapes dataset: deterministic, COCO-loadable, visible-pixel masks, nesting, occlusion, sizes."""

import json

import numpy as np
from pycocotools.coco import COCO

from pipeline.datasets.shapes import CATEGORIES, write_split
from pipeline.evaluation.ground_truth import area_bucket


def _load(path):
    coco = COCO(str(path))
    return coco, json.loads(path.read_text())


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = write_split(tmp_path / "a", "val", 6, seed=3)
    b = write_split(tmp_path / "b", "val", 6, seed=3)
    c = write_split(tmp_path / "c", "val", 6, seed=4)
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    for name in sorted(p.name for p in (tmp_path / "a" / "val").iterdir()):
        assert (tmp_path / "a" / "val" / name).read_bytes() == (tmp_path / "b" / "val" / name).read_bytes()


def test_masks_are_disjoint_visible_pixels_with_nesting_occlusion_and_all_sizes(tmp_path):
    path = write_split(tmp_path, "val", 30, seed=1)
    coco, doc = _load(path)
    assert [c["name"] for c in doc["categories"]] == list(CATEGORIES)
    buckets, holes, touching = set(), 0, 0
    for image_id in coco.getImgIds():
        anns = coco.imgToAnns[image_id]
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, 1, 1))
        if len(masks):
            assert masks.sum(0).max() <= 1  # every pixel belongs to at most one object
        for ann, mask in zip(anns, masks, strict=True):
            assert mask.sum() == ann["area"] >= 40
            buckets.add(area_bucket(ann["area"]))
            x, y, w, h = (int(v) for v in ann["bbox"])
            box = mask[y : y + h, x : x + w]
            inner = box[1:-1, 1:-1]
            # A hole or a bite: pixels inside the box that belong to another mask (nested child or occluder).
            others = masks.sum(0)[y : y + h, x : x + w] - box
            if inner.size and others[1:-1, 1:-1].any():
                touching += 1
            filled = np.zeros_like(box)
            if box.any():
                rows = np.nonzero(box.any(1))[0]
                for r in rows:
                    cols = np.nonzero(box[r])[0]
                    filled[r, cols.min() : cols.max() + 1] = 1
            holes += int((filled - box).sum() > 0 and (others * (filled - box)).any())
    assert buckets == {"small", "medium", "large"}
    assert holes > 0  # nested objects cut holes in their parents
    assert touching > 10  # and objects cover parts of each other
    assert 3 * 30 <= len(doc["annotations"]) <= 8 * 30
