"""Text prompts with a tiny random OWLv2 and a tokenizer from a small written vocabulary: the boxes equal
transformers' own post-processing, classes keep their order and ids, per-class thresholds, the queries' text
embeddings computed once, and the refusals (missing extra, empty or repeated classes, a query too long for the
detector's text model, pickled weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.bench.text_models import write_tiny_owlv2
from pipeline.config.sections import StorageConfig, TextConfig
from pipeline.ontology import NamedClass, read_classes
from pipeline.prompts.text import TextDetector, check_text_prompts

STORAGE = StorageConfig()
CLASSES = [NamedClass("forklift", ("forklift", "lift truck")), NamedClass("pallet", ("pallet",))]


@pytest.fixture(scope="module")
def owl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_owlv2(tmp_path_factory.mktemp("owlv2") / "owlv2")


def _images() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), rng.integers(0, 256, (64, 40, 3), dtype=np.uint8)]
    return images, np.array([[480, 640], [640, 400]])


def test_boxes_and_scores_equal_transformers_post_processing(owl: Path) -> None:
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    detector = TextDetector(TextConfig(weights=str(owl)), CLASSES, STORAGE, torch.device("cpu"))
    images, original_hw = _images()
    boxes, scores, query = detector.raw(images, original_hw)
    processor = Owlv2Processor.from_pretrained(owl)
    model = Owlv2ForObjectDetection.from_pretrained(owl).eval()
    queries = ["forklift", "lift truck", "pallet"]
    inputs = processor(text=[queries] * 2, images=images, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    theirs = processor.post_process_grounded_object_detection(
        outputs, threshold=-1.0, target_sizes=[tuple(hw) for hw in original_hw.tolist()]
    )
    for i, expected in enumerate(theirs):
        assert torch.allclose(boxes[i], expected["boxes"], rtol=1e-5, atol=1e-3)
        assert torch.allclose(scores[i], expected["scores"], atol=1e-6)
        assert torch.equal(query[i], expected["labels"])


def test_classes_thresholds_nms_and_the_cap(owl: Path) -> None:
    images, original_hw = _images()
    everything = TextConfig(weights=str(owl), box_thresh=0.0, nms_thresh=1.0, max_boxes_per_image=1000)
    found = TextDetector(everything, CLASSES, STORAGE, torch.device("cpu")).detect(images, original_hw)
    for detections, (h, w) in zip(found, original_hw.tolist(), strict=True):
        assert len(detections.scores) == 16  # every patch of the 4x4 grid
        assert set(detections.classes.tolist()) <= {0, 1}
        assert (np.diff(detections.scores) <= 0).all()
        assert (detections.boxes_xyxy >= 0).all() and (detections.boxes_xyxy[:, [0, 2]] <= w).all()
        assert (detections.boxes_xyxy[:, [1, 3]] <= h).all()
    # A class of its own threshold 1.0 finds nothing; the other keeps its boxes.
    strict = [CLASSES[0], NamedClass("pallet", ("pallet",), threshold=1.0)]
    only = TextDetector(everything, strict, STORAGE, torch.device("cpu")).detect(images, original_hw)
    for detections, before in zip(only, found, strict=True):
        assert detections.classes.tolist() == [0] * int((before.classes == 0).sum())
    capped = TextConfig(weights=str(owl), box_thresh=0.0, nms_thresh=0.3, max_boxes_per_image=3)
    for detections in TextDetector(capped, CLASSES, STORAGE, torch.device("cpu")).detect(images, original_hw):
        assert 1 <= len(detections.scores) <= 3


def test_query_embeddings_are_computed_once_per_detector(owl: Path, monkeypatch) -> None:
    from transformers.models.owlv2 import modeling_owlv2

    calls = []
    original = modeling_owlv2.Owlv2Model.get_text_features

    def counted(self, *args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_owlv2.Owlv2Model, "get_text_features", counted)
    detector = TextDetector(TextConfig(weights=str(owl)), CLASSES, STORAGE, torch.device("cpu"))
    images, original_hw = _images()
    for _ in range(3):
        detector.detect(images, original_hw)
    assert calls == [3]  # one call, for the three queries


def test_classes_from_a_file_with_queries_and_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text("- person\n- forklift: [forklift, lift truck]\n- pallet: {queries: [pallet], threshold: 0.3}\n")
    classes = read_classes(TextConfig(file=str(path)), STORAGE)
    assert classes == [
        NamedClass("person", ("person",)),
        NamedClass("forklift", ("forklift", "lift truck")),
        NamedClass("pallet", ("pallet",), 0.3),
    ]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("forklift: [forklift, lift truck]\nperson: person\n")
    assert [c.name for c in read_classes(TextConfig(file=str(mapping)), STORAGE)] == ["forklift", "person"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TextConfig(), "needs class names"),
        (TextConfig(classes=("pallet", "box", "pallet")), "class name 'pallet' is given more than once"),
        (TextConfig(classes=("pallet", " ")), "an empty class name"),
        (TextConfig(classes=("box",), file="classes.yaml"), "not both"),
    ],
)
def test_bad_class_lists_are_refused(text: TextConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_classes(text, STORAGE)


def test_a_query_in_two_classes_and_a_bad_threshold_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text("- forklift: [forklift, truck]\n- lorry: [truck]\n")
    with pytest.raises(ValueError, match="query 'truck' is given more than once"):
        read_classes(TextConfig(file=str(path)), STORAGE)
    path.write_text("- pallet: {queries: [pallet], threshold: 2}\n")
    with pytest.raises(ValueError, match="threshold 2, not in"):
        read_classes(TextConfig(file=str(path)), STORAGE)


def test_the_driver_check_gives_categories_and_identity(owl: Path) -> None:
    text = TextConfig(weights=str(owl), classes=("forklift", "pallet"))
    digest, categories = check_text_prompts(text, STORAGE, None)
    assert [(c["id"], c["name"]) for c in categories] == [(1, "forklift"), (2, "pallet")]
    other, _ = check_text_prompts(TextConfig(weights=str(owl), classes=("pallet", "forklift")), STORAGE, None)
    assert len(digest) == 64 and other != digest  # the class order is part of the labels' identity


def test_a_query_longer_than_the_text_model_is_refused(owl: Path) -> None:
    long_name = "x" * 20  # unknown letters: one token each, over the tiny detector's 16
    with pytest.raises(ValueError, match=r"query 'x{20}' is 22 tokens, over the detector's 16"):
        check_text_prompts(TextConfig(weights=str(owl), classes=(long_name,)), STORAGE, None)


def test_weights_that_are_not_safetensors_are_refused(owl: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for path in owl.iterdir():
        if path.suffix != ".safetensors":
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        check_text_prompts(TextConfig(weights=str(folder), classes=("box",)), STORAGE, None)


def test_without_the_extra_the_message_names_it(owl: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ValueError, match=r"install the \[text\] extra, pip install 'samlabel\[text\]'"):
        check_text_prompts(TextConfig(weights=str(owl), classes=("box",)), STORAGE, None)


def test_damaged_weights_are_refused_on_the_driver(owl: Path, tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    for path in owl.iterdir():
        data = path.read_bytes()
        (folder / path.name).write_bytes(data[:100] if path.suffix == ".safetensors" else data)
    with pytest.raises(ValueError, match="damaged weights"):
        check_text_prompts(TextConfig(weights=str(folder), classes=("box",)), STORAGE, None)


def test_a_text_model_whose_width_does_not_fit_the_class_head_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_owlv2(tmp_path / "narrow", projection_dim=24)
    with pytest.raises(ValueError, match="the text model gives 24-wide query embeddings, the class head takes 32"):
        check_text_prompts(TextConfig(weights=str(folder), classes=("box",)), STORAGE, None)
