"""The one-command GPU check behind ``scripts/gpu_check.sh``: the GPU tests, then the GPU table, within a time budget,
written to a folder as ``gpu_check.json`` and ``gpu_check.md``.

Each part runs in its own process with what is left of the budget, so a part that runs long is stopped and the
parts before it are still written. ``--device cpu`` is the dry run: the tiny test model, one precision, tiny batches
and grid, seconds in all (the GPU tests then skip).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from pipeline.bench.gpu_table import markdown_table

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TablePart:
    """One ``samlabel bench --gpu-table`` call."""

    name: str
    args: list[str]


def table_parts(device: str) -> list[TablePart]:
    """What the check measures: on CUDA, L0 and XL1 eager in three precisions and four batches, then the
    AOT-compiled encoder in fp16 at the two largest batches; on the CPU dry run, the tiny model once."""
    if device == "cpu":
        tiny = ["--models", "mini-l", "--precisions", "fp32", "--batch-sizes", "1,2", "--iterations", "1"]
        return [TablePart("eager", [*tiny, "--points-per-side", "4", "--compile-modes", "eager"])]
    models = ["--models", "efficientvit-sam-l0,efficientvit-sam-xl1", "--points-per-side", "32"]
    return [
        TablePart(
            "eager",
            [*models, "--precisions", "fp32,bf16,fp16", "--batch-sizes", "8,16,32,64", "--iterations", "10"],
        ),
        TablePart(
            "aot",
            [*models, "--precisions", "fp16", "--batch-sizes", "32,64", "--iterations", "10"]
            + ["--compile-modes", "aot"],
        ),
    ]


def run_check(out: Path, device: str, budget_seconds: float) -> dict:
    """Runs the parts in order within ``budget_seconds``; writes and returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_seconds
    report = {"device": device, "machine": _machine(device), "budget_seconds": budget_seconds, "parts": [], "rows": []}
    tests_xml = out / "gpu_tests.xml"
    pytest = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", f"--junitxml={tests_xml}"]
    part = _run_part("gpu tests", pytest, out / "gpu_tests.log", deadline)
    part["tests"] = _test_counts(tests_xml)
    report["parts"].append(part)
    for table in table_parts(device):
        json_path = out / f"table_{table.name}.json"
        bench = [sys.executable, "-m", "jobs.bench", "--device", device, "--gpu-table", *table.args]
        log = out / f"table_{table.name}.log"
        part = _run_part(f"table {table.name}", [*bench, "--json", str(json_path)], log, deadline)
        if json_path.exists():
            report["rows"] += json.loads(json_path.read_text())["rows"]
        report["parts"].append(part)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(format_report(report) + "\n")
    return report


def format_report(report: dict) -> str:
    lines = [f"# GPU check on {report['machine']['device_name']}", ""]
    for part in report["parts"]:
        tests = part.get("tests")
        counts = "" if not tests else " (" + ", ".join(f"{v} {k}" for k, v in tests.items()) + ")"
        lines.append(f"- {part['name']}: {part['status']} in {part['seconds']:.0f} s{counts}")
    machine = report["machine"]
    lines += ["", f"torch {machine['torch']}, Python {machine['python']}, {machine['cpus']} CPUs", ""]
    lines.append(markdown_table(report["rows"]) if report["rows"] else "No table rows were measured.")
    return "\n".join(lines)


def _run_part(name: str, command: list[str], log: Path, deadline: float) -> dict:
    left = deadline - time.monotonic()
    if left < 10:
        return {"name": name, "status": "not run (time budget spent)", "seconds": 0.0}
    start = time.monotonic()
    with log.open("w") as handle:
        try:
            code = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, timeout=left).returncode
            status = "ok" if code == 0 else f"failed (exit {code}, see {log.name})"
        except subprocess.TimeoutExpired:
            status = f"stopped at the time budget (see {log.name})"
    print(f"samlabel gpu check: {name}: {status}", flush=True)
    return {"name": name, "status": status, "seconds": round(time.monotonic() - start, 1)}


def _test_counts(junit_xml: Path) -> dict[str, int] | None:
    if not junit_xml.exists():
        return None
    suite = ElementTree.parse(junit_xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    total = int(suite.get("tests", 0))
    failed, errors, skipped = (int(suite.get(k, 0)) for k in ("failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed + errors, "skipped": skipped}


def _machine(device: str) -> dict:
    import torch

    from pipeline.runtime.capability import cpu_model

    cpu = cpu_model()
    return {
        "device_name": torch.cuda.get_device_name() if device == "cuda" else f"CPU {cpu}",
        "cpu": cpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json, gpu_check.md and the parts' logs")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the dry run (seconds)")
    parser.add_argument("--budget-seconds", type=float, default=450.0, help="for all parts together")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            message = "no CUDA device here (use --device cpu for the dry run)"
            print(f"scripts/gpu_check.sh: error: {message}", file=sys.stderr)
            return 2
    report = run_check(args.out, args.device, args.budget_seconds)
    print(format_report(report))
    failed = [p["name"] for p in report["parts"] if p["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
