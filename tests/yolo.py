"""A randomly initialised YOLOv8n detector (``yolov8n.yaml``) saved as an ultralytics weight file, for tests."""

from __future__ import annotations

from pathlib import Path


def write_random_yolo(path: Path, cache_dir: Path) -> Path:
    """Builds yolov8n from its YAML (no download), seeds it, and saves it as ``path`` (.pt)."""
    import torch

    from pipeline.prompts.yolo import import_ultralytics

    ultralytics = import_ultralytics(str(cache_dir))
    torch.manual_seed(0)
    model = ultralytics.YOLO("yolov8n.yaml", task="detect")
    model.model.names = {i: f"class{i}" for i in range(80)}
    model.save(str(path))
    return path
