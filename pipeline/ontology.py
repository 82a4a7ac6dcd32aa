"""Class lists (ontologies) shared by text prompts and mask classification: each class has a name (its COCO
category, ids from 1 in the given order), the text queries that describe it, and optionally its own threshold.

Given inline as ``<section>.classes=[person, forklift]`` or as a YAML file (``<section>.file``) holding a list or a
mapping of classes, each a name, ``name: [queries]`` or ``name: {queries: [...], threshold: 0.2}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import yaml

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import read_bytes

MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class NamedClass:
    """One named class: its COCO name, the text queries that describe it, and its own threshold (or None)."""

    name: str
    queries: tuple[str, ...]
    threshold: float | None = None


class ClassList(Protocol):
    classes: tuple[str, ...]
    file: str | None


def read_classes(section: ClassList, storage: StorageConfig, name: str = "text") -> list[NamedClass]:
    """The classes of ``section.classes`` or ``section.file`` (the config section called ``name``), in order;
    ValueError naming the problem: none given, both given, an empty or repeated name or query, a bad threshold."""
    if section.classes and section.file:
        raise ValueError(f"set {name}.classes or {name}.file, not both")
    if section.file:
        try:
            entries = yaml.safe_load(read_bytes(section.file, storage, max_bytes=MAX_FILE_BYTES))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{name}.file {section.file}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        classes = _classes_from_file(entries, f"{name}.file {section.file}")
    else:
        classes = [NamedClass(str(c).strip(), (str(c).strip(),)) for c in section.classes]
    if not classes:
        raise ValueError(f"{name} needs class names: --set {name}.classes=[person, forklift] or {name}.file")
    check_classes(classes, name)
    return classes


def check_classes(classes: Sequence[NamedClass], name: str) -> None:
    """ValueError for an empty or repeated class name or query."""
    names = [c.name for c in classes]
    queries = [q for c in classes for q in c.queries]
    for what, values in (("class name", names), ("query", queries)):
        if any(not v for v in values):
            raise ValueError(f"{name} classes: an empty {what}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{name} classes: {what} {repeated[0]!r} is given more than once")


def categories_of(classes: Sequence[NamedClass]) -> list[dict]:
    """COCO categories: the classes in the given order, ids from 1."""
    return [{"id": k + 1, "name": c.name, "supercategory": "object"} for k, c in enumerate(classes)]


def _classes_from_file(entries: object, source: str) -> list[NamedClass]:
    if isinstance(entries, dict):
        entries = [{name: value} for name, value in entries.items()]
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a list or a mapping of classes")
    classes = []
    for entry in entries:
        if isinstance(entry, str):
            classes.append(NamedClass(entry.strip(), (entry.strip(),)))
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{source}: each class is a name or one 'name: ...' entry, got {entry!r}")
        ((name, value),) = entry.items()
        threshold = None
        if isinstance(value, dict):
            threshold = value.get("threshold")
            value = value.get("queries", [name])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError(f"{source}: class {name!r} needs a list of queries")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"{source}: class {name!r} has threshold {threshold!r}, not in [0, 1]")
        classes.append(NamedClass(str(name).strip(), tuple(str(q).strip() for q in value), threshold))
    return classes
