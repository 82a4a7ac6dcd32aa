"""Nightly incremental labeling: ``python -m jobs.nightly --input URI --output-root URI [label flags ...]``.

Labels only the images that the output root's ledger does not hold for the current model and settings, into
``runs/<run_id>/`` (the label job's layout), then updates the consolidated view ``view/<settings>/``,
``latest.json`` and the ledger. Rerunning the same night is a no-op; rerunning after a crash resumes. Exit status:
0 complete or nothing new, 1 failed after work started (rerun to resume), 2 bad flag, config, input, output or
changed settings without ``--relabel`` (before any work), 3 another run holds the root's lock (try later).
The last line on stdout is a JSON summary (also written to ``--summary-json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from jobs.cli import prog
from pipeline.config.sections import LabelConfig
from pipeline.labeling.cli import add_labeling_arguments, config_from_args, setup_logging
from pipeline.labeling.prepare import prepare_labeling
from pipeline.labeling.summary import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    describe_failure,
    emit_summary,
    fail_run,
)
from pipeline.nightly.lock import LockHeldError
from pipeline.nightly.night import NightFailedError, NightOptions, night_config, run_night

log = logging.getLogger("samlabel")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog("jobs.nightly"), description=__doc__.splitlines()[0])
    add_labeling_arguments(parser, output_help=argparse.SUPPRESS)
    parser.add_argument("--output-root", help="output root holding runs/, view/, latest.json and the ledger")
    parser.add_argument(
        "--relabel", action="store_true", help="label every image again if the model or settings changed"
    )
    parser.add_argument(
        "--lock-ttl", type=float, default=900.0, metavar="SECONDS", help="lock expiry, renewed every third of it"
    )
    args = parser.parse_args(argv)
    args.output = args.output_root or args.output
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    start = time.time()
    cfg: LabelConfig | None = None
    summary: dict = {"job": "nightly", "output_root": args.output}
    try:
        cfg, limit = night_config(config_from_args(args))
        if not cfg.output.uri:
            raise ValueError("--output-root is required")
        labeling = prepare_labeling(cfg)
        options = NightOptions(cfg.output.uri, relabel=args.relabel, lock_ttl_s=args.lock_ttl, limit=limit)
        result = run_night(labeling, options, started_at=start)
    except LockHeldError as e:
        return fail_run(summary, args.summary_json, cfg, EXIT_LOCKED, "locked", describe_failure(e))
    except NightFailedError as e:
        log.debug("night failed", exc_info=True)
        message = f"the night failed ({describe_failure(e)}); rerun the same command to resume"
        return fail_run(summary, args.summary_json, cfg, EXIT_FAILED, "failed", message)
    except (ValueError, OSError) as e:
        return fail_run(summary, args.summary_json, cfg, EXIT_BAD_INPUT, "bad_input", describe_failure(e))
    if result["status"] == "nothing_new":
        print(f"samlabel: nothing new in {args.input} for these settings; nothing to do")
    emit_summary({**summary, **result, "exit_code": EXIT_OK}, args.summary_json, cfg)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
