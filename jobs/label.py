"""Label an image bucket with EfficientViT-SAM: ``python -m jobs.label --input URI --output URI [...]``.

The same flags work under ``ray job submit --working-dir . -- python -m jobs.label ...``. Rerunning into the same
``--output`` resumes an interrupted run. Exit status: 0 the run is complete (now or already), 1 the run failed
(rerun to resume), 2 a bad flag, config, URI, weight file or output (reported before any image is read). The last
line on stdout is a JSON summary (also written to ``--summary-json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from jobs.cli import prog
from pipeline.config.sections import LabelConfig
from pipeline.labeling.cli import add_labeling_arguments, config_from_args, setup_logging
from pipeline.labeling.output import open_output
from pipeline.labeling.prepare import prepare_labeling
from pipeline.labeling.run import label_output
from pipeline.labeling.summary import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, describe_failure, emit_summary, fail_run
from pipeline.redact import redact

OFFICIAL_L0 = "hf://mit-han-lab/efficientvit-sam/efficientvit_sam_l0.pt"
log = logging.getLogger("samlabel")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog("jobs.label"), description=__doc__.splitlines()[0])
    add_labeling_arguments(parser, output_help="output folder (local, file:// or s3://)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    start = time.time()
    cfg: LabelConfig | None = None
    summary: dict = {"job": "label", "output": args.output}
    try:
        cfg = config_from_args(args)
        labeling = prepare_labeling(cfg)
        opened = open_output(labeling, cfg.output.uri)
    except (ValueError, OSError) as e:
        return fail_run(summary, args.summary_json, cfg, EXIT_BAD_INPUT, "bad_input", describe_failure(e))
    if opened.state.complete:
        print(f"samlabel: {redact(cfg.output.uri)} already holds this completed run; nothing to do")
        emit_summary({**summary, "status": "already_complete", "exit_code": EXIT_OK}, args.summary_json, cfg)
        return EXIT_OK
    if labeling.weights_sha256 is None:
        print(
            f"samlabel: warning: {cfg.model.name} runs with random weights (no --weights), so its masks are "
            f"meaningless; for real labels use e.g. --model efficientvit-sam-l0 --weights {OFFICIAL_L0}"
        )
    try:
        result = label_output(labeling, opened, labeling.plan.table, started_at=start)
    except Exception as e:  # the run failed after work started: no _SUCCESS, rerun to resume
        log.debug("run failed", exc_info=True)
        message = f"the run failed ({describe_failure(e)}); rerun the same command to resume"
        return fail_run(summary, args.summary_json, cfg, EXIT_FAILED, "failed", message)
    print(result.summary_line())
    emit_summary({**summary, **result.to_json(), "status": "complete", "exit_code": EXIT_OK}, args.summary_json, cfg)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
