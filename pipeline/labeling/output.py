"""Open an output folder for a run: check that it is fresh, resumable (same run fingerprint) or complete, and mark
it (:func:`pipeline.io.run_output.prepare_output`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.config.loading import to_dict
from pipeline.config.sections import LabelConfig
from pipeline.io.run_output import OutputState, prepare_output
from pipeline.labeling.identity import run_fingerprint
from pipeline.labeling.prepare import Labeling
from pipeline.redact import redact_data


@dataclass(frozen=True)
class OpenedOutput:
    cfg: LabelConfig
    """The labeling config with this folder as ``output.uri`` and the run's id as ``output.run_id``."""
    state: OutputState
    """What the folder holds already: complete or not, the image ids done."""
    run_id: str
    """The configured run id, else the settings id."""
    fingerprint: str
    """The run fingerprint the folder is marked with."""


def open_output(labeling: Labeling, output_uri: str, run_id: str | None = None) -> OpenedOutput:
    """Checks ``output_uri`` and marks it; OutputConflictError (a ValueError) or OSError otherwise."""
    cfg = labeling.cfg
    output = dataclasses.replace(cfg.output, uri=output_uri, run_id=run_id or cfg.output.run_id)
    cfg = dataclasses.replace(cfg, output=output)
    run_fp = run_fingerprint(
        cfg, labeling.weights_sha256, labeling.prompt_model.weights_sha256, labeling.prompt_model.classifier_sha256
    )
    state = prepare_output(output_uri, cfg.storage, run_fp, redact_data(to_dict(cfg)))
    return OpenedOutput(cfg, state, cfg.output.run_id or labeling.settings_id, run_fp)
