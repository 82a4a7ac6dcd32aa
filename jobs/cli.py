"""The ``samlabel`` command: ``samlabel <job> [flags]`` runs ``python -m jobs.<job> [flags]`` (the same flags, exit
status and output); ``samlabel --help`` lists the jobs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys

COMMANDS = {
    "label": "jobs.label",
    "nightly": "jobs.nightly",
    "evaluate": "jobs.evaluate",
    "bench": "jobs.bench",
    "render": "jobs.render",
    "shapes": "jobs.shapes",
    "compare-prompts": "jobs.compare_prompts",
    "train-sam": "jobs.train_sam",
    "train-autoppn": "jobs.train_autoppn",
    "export": "jobs.export",
}
_invoked: dict[str, str] = {}


def prog(module: str) -> str:
    """The program name a job's help shows: ``samlabel label`` when run by this command, else ``python -m ...``."""
    return _invoked.get(module, f"python -m {module}")


def summary(module: str) -> str:
    """The first sentence of a job module's docstring, read without importing it (imports take seconds)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"job module {module} is not installed")
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    first = doc.splitlines()[0] if doc else ""
    return first.split(": ``")[0].rstrip(".")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary(module)}" for name, module in COMMANDS.items()]
    return "\n".join(
        [
            "usage: samlabel <command> [flags]   (the same as python -m jobs.<command> [flags])",
            "",
            "Bulk auto-labeling on Ray: EfficientViT-SAM masks for image buckets, written as COCO and Parquet.",
            "",
            "commands:",
            *lines,
            "",
            "samlabel <command> --help shows a command's flags.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    module = COMMANDS.get(args[0])
    if module is None:
        print(f"samlabel: error: unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _invoked[module] = f"samlabel {args[0]}"
    return importlib.import_module(module).main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
