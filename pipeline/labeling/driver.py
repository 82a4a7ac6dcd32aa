"""What ``jobs.label`` and ``jobs.nightly`` share: prepare a labeling (config → weights → input plan), label one
output folder through the label job's resume mechanism, one-line failure reports and the machine-readable summary.

Exit status, for schedulers: 0 complete (now or already), 1 failed after work started (rerun the same command to
resume), 2 bad flag, config, URI, input, weights or output, reported before any image is read, 3 another run holds
the output root's lock (nightly only; try again later).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import sys
import time
from dataclasses import dataclass

from pipeline.config.loading import fingerprint, to_dict
from pipeline.config.sections import LabelConfig
from pipeline.io import storage as st
from pipeline.io.run_output import OutputState, prepare_output
from pipeline.labeling.inputs import InputPlan, plan_inputs, remaining
from pipeline.labeling.prompt_model import PromptModel, check_prompt_model
from pipeline.labeling.rules import label_fingerprint, labeling_settings, validate_label_config
from pipeline.redact import redact, redact_data

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3


@dataclass(frozen=True)
class Labeling:
    """A validated configuration with its verified weights and its input plan, before any image is read."""

    cfg: LabelConfig
    weights_sha256: str | None
    plan: InputPlan
    prompt_model: PromptModel = PromptModel()
    """The detector (yolo) or proposal head (autoppn), checked on the driver; empty for other modes."""

    @property
    def settings_fingerprint(self) -> str:
        """Identity of the labels (model, weights, prompts, thresholds, limits), not of where anything lives."""
        return fingerprint(labeling_settings(self.cfg, self.weights_sha256, self.prompt_model.weights_sha256))

    def fingerprint_for(self, cfg: LabelConfig) -> str:
        """Identity of a run of these labels with ``cfg``'s inputs and run id (for resume)."""
        return label_fingerprint(cfg, self.weights_sha256, self.prompt_model.weights_sha256)

    @property
    def settings_id(self) -> str:
        """Short form of the settings fingerprint: the label job's default run id."""
        return self.settings_fingerprint[:16]


@dataclass(frozen=True)
class OpenedOutput:
    """An output folder checked and marked for a run (see :func:`pipeline.io.run_output.prepare_output`)."""

    cfg: LabelConfig
    """The labeling config with this folder as ``output.uri`` and the run's id as ``output.run_id``."""
    state: OutputState


def prepare_labeling(cfg: LabelConfig) -> Labeling:
    """Validates ``cfg``, verifies the weights (and the prompt model's) and plans the inputs; ValueError/OSError
    name the problem."""
    from pipeline.runtime.accuracy import check_precision
    from pipeline.runtime.weights import verify_weights

    validate_label_config(cfg)
    weights_sha256 = verify_weights(cfg.model, cfg.storage)
    check_precision(cfg.model, cfg.storage)
    prompt_model = check_prompt_model(cfg)
    return Labeling(cfg, weights_sha256, plan_inputs(cfg, prompt_model.categories), prompt_model)


def open_output(labeling: Labeling, output_uri: str, run_id: str | None = None) -> OpenedOutput:
    """Checks ``output_uri`` (fresh, resumable or complete) and marks it; OutputConflictError/OSError otherwise."""
    cfg = labeling.cfg
    output = dataclasses.replace(cfg.output, uri=output_uri, run_id=run_id or cfg.output.run_id)
    cfg = dataclasses.replace(cfg, output=output)
    state = prepare_output(output_uri, cfg.storage, labeling.fingerprint_for(cfg), redact_data(to_dict(cfg)))
    return OpenedOutput(cfg, state)


def label_output(labeling: Labeling, opened: OpenedOutput, plan: InputPlan, started_at: float) -> dict:
    """Labels the images of ``plan`` not done yet into the opened folder, commits it and returns the summary."""
    from pipeline.labeling.run import run_and_commit
    from pipeline.runtime.weights import resolve_weights

    cfg = opened.cfg
    run_id = cfg.output.run_id or labeling.settings_id
    todo = remaining(plan.table, opened.state.done_image_ids)
    print(
        f"samlabel: {todo.num_rows} of {plan.table.num_rows} images to label with {cfg.model.name} "
        f"({cfg.prompts.mode} prompts) into {redact(cfg.output.uri)}"
    )
    info = {
        "run_id": run_id,
        "fingerprint": labeling.fingerprint_for(cfg),
        "settings_fingerprint": labeling.settings_fingerprint,
        "config": to_dict(cfg),
        "model": {
            "name": cfg.model.name,
            "weights": resolve_weights(cfg.model),
            "weights_sha256": labeling.weights_sha256,
            "backend": cfg.model.backend,
            "precision": cfg.model.precision,
        },
        "prompt_model": {
            "weights": labeling.prompt_model.weights_uri,
            "weights_sha256": labeling.prompt_model.weights_sha256,
        },
    }
    return run_and_commit(cfg, plan, todo, redact_data(info), started_at=started_at)


def describe_failure(exc: BaseException) -> str:
    """One line naming what went wrong, from the innermost cause (Ray task errors unwrapped), secrets redacted."""
    cause = root_cause(exc)
    text = st.describe_error(cause)
    if isinstance(cause, OSError) and cause.errno and cause.strerror:
        # Ray re-raises a task's OSError with its own message as the file name: keep only a real path.
        path = cause.filename if isinstance(cause.filename, str) and "\n" not in cause.filename else None
        text = f"{type(cause).__name__}: {cause.strerror}" + (f": {path}" if path and len(path) < 500 else "")
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        text = f"no space left on device ({text})"
    elif isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EPERM):
        text = f"cannot write the output ({text})"
    return redact(text)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception: follows Ray's ``RayTaskError.cause`` and Python's ``__cause__``."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


def emit_summary(summary: dict, path: str | None, cfg: LabelConfig | None = None) -> None:
    """Prints ``summary`` as one JSON line on stdout and, when ``path`` is given, writes it there too."""
    line = json.dumps(redact_data({**summary, "finished_at": time.time()}), sort_keys=True)
    print(line)
    sys.stdout.flush()
    if path:
        try:
            st.write_bytes(path, (line + "\n").encode(), cfg.storage if cfg else LabelConfig().storage)
        except (OSError, ValueError) as e:
            warning = f"samlabel: warning: cannot write the summary to {redact(path)}: {describe_failure(e)}"
            print(warning, file=sys.stderr)


def fail_run(summary: dict, path: str | None, cfg: LabelConfig | None, code: int, status: str, error: str) -> int:
    """Prints ``error`` as the one-line ``samlabel: error:`` message, emits the summary with it; returns ``code``."""
    print(f"samlabel: error: {error}", file=sys.stderr)
    emit_summary({**summary, "status": status, "exit_code": code, "error": error}, path, cfg)
    return code
