"""How a labeling job reports: exit codes, the typed result of a committed run, one-line failure messages and the
machine-readable JSON summary (the last line on stdout, optionally also written to a file or URI).

Exit status, for schedulers: 0 complete (now or already), 1 failed after work started (rerun the same command to
resume), 2 bad flag, config, URI, input, weights or output, reported before any image is read, 3 another run holds
the output root's lock (nightly only; try again later).
"""

from __future__ import annotations

import errno
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from pipeline.config.sections import LabelConfig
from pipeline.io import storage as st
from pipeline.redact import redact, redact_data

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3


@dataclass(frozen=True)
class LabelResult:
    """A committed run, as the jobs report it."""

    run_id: str
    counts: dict[str, int]
    """The committed run's totals: ``images``, ``labeled``, ``errors``, ``annotations``."""
    attempt_images: int
    """Images written by this attempt (the rest were done by earlier ones)."""
    timings: dict[str, Any]
    """``stage_seconds``, ``label_seconds``, ``commit_seconds``, ``total_seconds``, ``images_per_second``."""
    output_uri: str
    report_uri: str | None
    """The review report's index.html, when the run writes one."""

    def summary_line(self) -> str:
        """The one human-readable line printed when a run completes."""
        seconds, rate = self.timings["label_seconds"], self.timings["images_per_second"]
        speed = f"{rate:.2f} images/s" if rate and self.attempt_images else "n/a"
        report = f"; review report in {redact(self.report_uri)}" if self.report_uri else ""
        return (
            f"samlabel: done: {self.counts['labeled']} images labeled, {self.counts['errors']} in errors/, "
            f"{self.counts['annotations']} masks; this attempt {self.attempt_images} images in {seconds:.1f} s "
            f"({speed}), commit {self.timings['commit_seconds']:.1f} s; outputs in {redact(self.output_uri)}{report}"
        )

    def to_json(self) -> dict[str, Any]:
        """The fields of the JSON summary that describe the run."""
        return {
            "run_id": self.run_id,
            "counts": self.counts,
            "attempt_images": self.attempt_images,
            "timings": self.timings,
        }


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
