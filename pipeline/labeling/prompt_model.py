"""The prompt model of a run (yolo or text detector, or AutoPPN head) and its mask classifier, checked on the driver
before any image is read.

Loading it here fails fast with one line (missing extra, missing or bad weights, unknown class filter), gives the
weights' sha256 for the run identity, and for yolo the detector's class names (for text the given classes), which
become the COCO categories.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.config.sections import LabelConfig


@dataclass(frozen=True)
class PromptModel:
    weights_uri: str | None = None
    weights_sha256: str | None = None
    categories: list[dict] | None = None
    """COCO categories of the output (yolo: the detector's selected classes); None keeps the default."""
    classifier_sha256: str | None = None
    """Identity of the mask classifier and its classes (classify), else None."""
    classifier_categories: list[dict] | None = None
    """The classifier's categories, which replace the run's (classify), else None."""


def check_prompt_model(cfg: LabelConfig) -> PromptModel:
    """Loads the run's prompt model (and the mask classifier) once on the driver; ValueError (one line) when it
    cannot be used."""
    prompt_model = _check_prompt_model(cfg)
    if not cfg.classify.enabled:
        return prompt_model
    from pipeline.classify.classifier import check_classifier

    digest, categories = check_classifier(cfg.classify, cfg.storage, cfg.model.cache_dir)
    return dataclasses.replace(prompt_model, classifier_sha256=digest, classifier_categories=categories)


def _check_prompt_model(cfg: LabelConfig) -> PromptModel:
    if cfg.prompts.mode == "yolo":
        from pipeline.prompts.yolo import class_indices, detector_categories, load_yolo

        model, digest = load_yolo(cfg.yolo, cfg.storage, cfg.model.cache_dir)
        names = {int(k): str(v) for k, v in model.names.items()}
        categories = detector_categories(names, class_indices(cfg.yolo.classes, names))
        return PromptModel(cfg.yolo.weights, digest, categories)
    if cfg.prompts.mode == "text":
        from pipeline.prompts.text import check_text_prompts

        digest, categories = check_text_prompts(cfg.text, cfg.storage, cfg.model.cache_dir)
        return PromptModel(cfg.text.weights, digest, categories)
    if cfg.prompts.mode == "autoppn":
        from pipeline.models import create_model
        from pipeline.prompts.autoppn.checkpoint import load_head

        head, digest = load_head(
            cfg.autoppn.weights, cfg.storage, cache_dir=cfg.model.cache_dir, expected_sha256=cfg.autoppn.weights_sha256
        )
        embed_dim = create_model(cfg.model.name, device="meta").embed_dim
        if head.card.embed_dim != embed_dim:
            raise ValueError(
                f"autoppn.weights: {cfg.autoppn.weights} reads {head.card.embed_dim}-channel embeddings "
                f"(trained on {head.card.sam_model or 'another model'}); {cfg.model.name} gives {embed_dim}"
            )
        return PromptModel(cfg.autoppn.weights, digest)
    return PromptModel()
