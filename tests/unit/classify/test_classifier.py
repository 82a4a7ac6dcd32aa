"""The zero-shot classifier with tiny random CLIP and SigLIP models and a tokenizer from a small written vocabulary:
its scores equal transformers' own for the same inputs, a class's queries are averaged, thresholds make masks
unknown, and the refusals (missing extra, bad class lists, a text too long, embeddings of different widths, a folder
that is not a classifier, pickled weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from pipeline.bench.text_models import write_tiny_classifier, write_tiny_owlv2
from pipeline.classify import classifier as classifier_module
from pipeline.classify.classifier import (
    ZeroShotClassifier,
    check_classifier,
    class_texts,
    load_classifier_files,
    tokenize_texts,
)
from pipeline.config.sections import ClassifyConfig, StorageConfig
from pipeline.ontology import NamedClass
from pipeline.runtime.capability import bf16_runs

STORAGE = StorageConfig()
CLASSES = [NamedClass("person", ("person",)), NamedClass("forklift", ("forklift",)), NamedClass("box", ("box",))]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp(request.param) / request.param, request.param)


def _classifier(folder: Path, classes=CLASSES, **settings) -> ZeroShotClassifier:
    settings = {"precision": "fp32", **settings}
    cfg = ClassifyConfig(classes=tuple(c.name for c in classes), weights=str(folder), **settings)
    return ZeroShotClassifier(cfg, classes, STORAGE, torch.device("cpu"))


def test_scores_equal_the_models_own(folder: Path) -> None:
    from transformers import AutoModel

    classifier = _classifier(folder)
    size = classifier.image_size
    pixels = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(0))
    files = load_classifier_files(folder, weights=False)
    tokens = tokenize_texts(files, class_texts(CLASSES, "a photo of a {}."))
    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = model(**tokens, pixel_values=pixels).logits_per_image  # [5,C]
    theirs = torch.sigmoid(logits) if files.config.model_type == "siglip" else logits.softmax(dim=-1)
    ours = classifier.scores(pixels)
    assert torch.allclose(ours, theirs, atol=1e-5)
    index, score = classifier.name(pixels)
    assert torch.equal(index, theirs.argmax(dim=-1)) and torch.allclose(score, theirs.max(dim=-1).values)


def test_auto_precision_is_bf16_only_where_it_runs_and_passes_the_gate(folder: Path, monkeypatch) -> None:
    pixels = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    exact = _classifier(folder).scores(pixels)
    auto = _classifier(folder, precision="auto")
    assert auto.precision == ("bf16" if bf16_runs(torch.device("cpu")) else "fp32") and auto.note
    assert (auto.scores(pixels) - exact).abs().max() <= classifier_module.GATE_SCORE_DIFF
    monkeypatch.setattr(classifier_module, "GATE_SCORE_DIFF", -1.0)  # no precision passes
    failed = _classifier(folder, precision="auto")
    assert failed.precision == "fp32" and "classifier in fp32" in failed.note
    assert torch.equal(failed.scores(pixels), exact)


def test_a_class_of_several_queries_is_their_average(folder: Path) -> None:
    two = [NamedClass("forklift", ("forklift", "lift truck")), NamedClass("box", ("box",))]
    classifier = _classifier(folder, two)
    single = _classifier(folder, [NamedClass("forklift", ("forklift",)), NamedClass("lift truck", ("lift truck",))])
    mean = torch.nn.functional.normalize(single.class_embeds.sum(dim=0), dim=0)
    assert torch.allclose(classifier.class_embeds[0], mean, atol=1e-6)


def test_masks_below_their_class_threshold_are_not_named(folder: Path) -> None:
    pixels = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    index, score = _classifier(folder).name(pixels)
    assert (index >= 0).all()  # min_score 0: every crop is named
    strict = [*CLASSES[:2], NamedClass("box", ("box",), threshold=1.0)]
    index_strict, _ = _classifier(folder, strict).name(pixels)
    assert torch.equal(index_strict, torch.where(index == 2, -1, index))  # box is never sure enough
    middle = float(score.median())
    index_min, _ = _classifier(folder, min_score=middle).name(pixels)
    assert torch.equal(index_min < 0, score < middle)


def test_the_driver_check_gives_categories_and_identity(folder: Path) -> None:
    cfg = ClassifyConfig(classes=("person", "box"), weights=str(folder))
    digest, categories = check_classifier(cfg, STORAGE, None)
    assert [(c["id"], c["name"]) for c in categories] == [(1, "person"), (2, "box"), (3, "unknown")]
    dropping = ClassifyConfig(classes=("box", "person"), weights=str(folder), below="drop")
    other, categories = check_classifier(dropping, STORAGE, None)
    assert [c["name"] for c in categories] == ["box", "person"] and other != digest


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"classes": ()}, "classify needs class names"),
        ({"classes": ("box", "box")}, "class name 'box' is given more than once"),
        ({"classes": ("box", "unknown")}, "'unknown' names the masks below their threshold"),
        ({"classes": ("box",), "template": "a photo"}, "needs a {} where the class name goes"),
        ({"classes": ("x" * 20,)}, r"text 'a photo of a x{20}.' is \d+ tokens, over the classifier's 16"),
    ],
)
def test_bad_class_lists_are_refused(folder: Path, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_classifier(ClassifyConfig(weights=str(folder), **settings), STORAGE, None)


def test_folders_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    narrow = write_tiny_classifier(tmp_path / "narrow", "siglip", text_width=24)
    with pytest.raises(ValueError, match="the text model gives 24-wide embeddings, the image model 32"):
        check_classifier(ClassifyConfig(classes=("box",), weights=str(narrow)), STORAGE, None)
    owl = write_tiny_owlv2(tmp_path / "owlv2")
    with pytest.raises(ValueError, match=r"not a CLIP or SigLIP model folder \(model_type 'owlv2'\)"):
        check_classifier(ClassifyConfig(classes=("box",), weights=str(owl)), STORAGE, None)


def test_pickled_weights_and_a_missing_extra_are_refused(tmp_path: Path, monkeypatch) -> None:
    folder = write_tiny_classifier(tmp_path / "clip")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for path in folder.iterdir():
        if path.suffix != ".safetensors":
            (pickled / path.name).write_bytes(path.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        check_classifier(ClassifyConfig(classes=("box",), weights=str(pickled)), STORAGE, None)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ValueError, match=r"classify needs transformers .* pip install 'samlabel\[text\]'"):
        check_classifier(ClassifyConfig(classes=("box",), weights=str(folder)), STORAGE, None)
