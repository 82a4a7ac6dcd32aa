"""The documented defaults file of a config (``jobs/configs/label.yaml``), generated from the dataclasses: each
section with its class docstring, each key with its default and its field docstring, so that the code is the one
source of both. Regenerate with ``python -m pipeline.config.document``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.loading import to_dict
from pipeline.config.sections import LabelConfig

LABEL_DEFAULTS = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "label.yaml"
HEADER = """\
# Defaults of `samlabel label` (`python -m jobs.label`), one line of documentation per key.
# Precedence: these defaults < a YAML file given with --config < --input/--output/... < --set section.key=value.
# Unknown keys and values out of a key's range are errors. Generated from pipeline/config/sections.py by
# `python -m pipeline.config.document`; a test checks that it is up to date.
"""


def defaults_yaml(config: type = LabelConfig, header: str = HEADER) -> str:
    """YAML of ``config``'s defaults: one block per section, one ``key: default  # doc`` line per field."""
    defaults = to_dict(config())
    lines = [header.rstrip()]
    for section in dataclasses.fields(config):
        cls = section.type if isinstance(section.type, type) else type(getattr(config(), section.name))
        lines += ["", f"{section.name}:  # {_one_line(inspect.getdoc(cls) or '')}"]
        docs = field_docs(cls)
        for name, value in defaults[section.name].items():
            lines.append(f"  {name}: {_value(value)}  # {docs.get(name, '')}".rstrip(" #"))
    return "\n".join(lines) + "\n"


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string right after its annotation), on one line."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if documented and isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            docs[node.target.id] = _one_line(str(following.value.value))
    return docs


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("\n...").strip()


if __name__ == "__main__":
    LABEL_DEFAULTS.write_text(defaults_yaml())
    sys.stdout.write(f"wrote {LABEL_DEFAULTS}\n")
