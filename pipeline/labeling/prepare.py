"""Prepare a labeling on the driver, before any image is read: validate the config, verify the weights (and the
prompt model's), plan the inputs, and compute the settings fingerprint once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.config.loading import fingerprint
from pipeline.config.sections import LabelConfig
from pipeline.labeling.identity import labeling_settings
from pipeline.labeling.inputs import InputPlan, plan_inputs
from pipeline.labeling.prompt_model import PromptModel, check_prompt_model
from pipeline.labeling.rules import validate_label_config


@dataclass(frozen=True)
class Labeling:
    """A validated configuration with its verified weights and its input plan."""

    cfg: LabelConfig
    weights_sha256: str | None
    plan: InputPlan
    prompt_model: PromptModel
    """The detector (yolo, text) or proposal head (autoppn), and the mask classifier, checked on the driver."""
    settings_fingerprint: str
    """Identity of the labels (model, weights, prompts, thresholds, limits), not of where anything lives."""

    @property
    def settings_id(self) -> str:
        """Short form of the settings fingerprint: the label job's default run id."""
        return self.settings_fingerprint[:16]


def prepare_labeling(cfg: LabelConfig) -> Labeling:
    """Checks everything a run needs; ValueError/OSError name the problem (exit 2 in the jobs)."""
    from pipeline.runtime.accuracy import check_precision
    from pipeline.runtime.weights import verify_weights

    validate_label_config(cfg)
    weights_sha256 = verify_weights(cfg.model, cfg.storage)
    check_precision(cfg.model, cfg.storage)
    prompt_model = check_prompt_model(cfg)
    plan = plan_inputs(cfg, prompt_model.categories)
    if prompt_model.classifier_categories is not None:  # the classifier names every mask: its classes are the run's
        plan = dataclasses.replace(plan, categories=prompt_model.classifier_categories)
    settings = fingerprint(
        labeling_settings(cfg, weights_sha256, prompt_model.weights_sha256, prompt_model.classifier_sha256)
    )
    return Labeling(cfg, weights_sha256, plan, prompt_model, settings)
