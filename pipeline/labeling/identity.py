"""Identity of labels and runs. The settings fingerprint names what decides an image's labels (model, weights,
prompts, thresholds, limits; not where anything lives): a nightly root reuses labels only under the same one. The run
fingerprint adds the inputs and the run id: an output folder resumes only the run it was opened for."""

from __future__ import annotations

from typing import Any

from pipeline.config.loading import fingerprint, to_dict
from pipeline.config.sections import LabelConfig

_NOT_LABELS = ("weights", "batch_size", "actors", "num_gpus")  # where a prompt model lives and how it runs


def labeling_settings(
    cfg: LabelConfig,
    weights_sha256: str | None,
    prompt_weights_sha256: str | None = None,
    classifier_sha256: str | None = None,
) -> dict[str, Any]:
    """What decides the labels of an image: model, weights, prompts and thresholds (not where anything lives).

    ``prompt_weights_sha256`` identifies the detector (yolo, text) or proposal head (autoppn) weights;
    ``classifier_sha256`` the mask classifier and its classes (classify).
    """
    data = to_dict(cfg)
    mode = cfg.prompts.mode
    params = {k: v for k, v in data[mode].items() if k not in _NOT_LABELS} if mode in data else {}
    settings = {
        "model": {k: data["model"][k] for k in ("name", "backend", "precision")},
        # Added only when not fp32, so that the labels of runs made before the option keep their fingerprint.
        **({"decoder_precision": cfg.model.decoder_precision} if cfg.model.decoder_precision != "fp32" else {}),
        "weights_sha256": weights_sha256,
        "prompts": mode,
        "params": params,
        "decode": {k: data["decode"][k] for k in ("max_file_bytes", "max_pixels")},
        "limits": {k: data["segment"][k] for k in ("max_prompts_per_image", "max_masks_per_image")},
    }
    if mode in ("yolo", "text", "autoppn"):
        settings["prompt_weights_sha256"] = prompt_weights_sha256
    if cfg.classify.enabled:  # added only when on, so that runs without it keep their fingerprint
        settings["classify"] = {k: v for k, v in data["classify"].items() if k not in _NOT_LABELS}
        settings["classifier_sha256"] = classifier_sha256
    return settings


def run_fingerprint(
    cfg: LabelConfig,
    weights_sha256: str | None,
    prompt_weights_sha256: str | None = None,
    classifier_sha256: str | None = None,
) -> str:
    """Identity of a run, for resume: its labeling settings, its inputs and its run id."""
    data = to_dict(cfg)
    inputs = {"input": data["input"], "prompts_file": cfg.prompts.file, "run_id": cfg.output.run_id}
    settings = labeling_settings(cfg, weights_sha256, prompt_weights_sha256, classifier_sha256)
    return fingerprint({**settings, **inputs})
