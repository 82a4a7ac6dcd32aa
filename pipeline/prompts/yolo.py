"""YOLOv8 detector prompts through ultralytics (the optional ``[yolo]`` extra, AGPL-3.0), offline and safe.

Before ultralytics is first imported in a process, :func:`import_ultralytics` sets its environment so that it never
reaches the network or the user's settings: ``YOLO_OFFLINE=1`` (no connectivity checks, downloads or events),
``YOLO_AUTOINSTALL=false`` (no pip installs), ``YOLO_VERBOSE=false``, ``ULTRALYTICS_SAFE_LOAD=1`` (checkpoints are
read with ``torch.load(weights_only=True)`` against ultralytics' allow-list of model classes: a weight file is
untrusted input), and ``YOLO_CONFIG_DIR`` inside samlabel's cache (unless set), where its settings file is created
once with sync and integrations off; its process-wide patch of ``PIL.Image.open`` is undone. Weights are fetched
to a local file first (path, ``s3://``, ``hf://``), so ultralytics never resolves a name to a download.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from pipeline.config.sections import StorageConfig, YoloConfig
from pipeline.io.storage import fetch, sha256_file
from pipeline.models.checkpoint import refused_pickle
from pipeline.segment.geometry import resize_longest_side

_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "vscode_msg", "openvino_msg")


def import_ultralytics(cache_dir: str | None = None) -> ModuleType:
    """``ultralytics``, imported with the offline environment above; ValueError when the extra is missing."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_VERBOSE"] = "false"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    root = Path(cache_dir or Path("~/.cache/samlabel")).expanduser()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "ultralytics"))
    from PIL import Image

    pil_open = Image.open
    try:
        import ultralytics
        import ultralytics.utils.patches  # noqa: F401  (applies the patch undone below, once per process)
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise ValueError(
            f"--prompts yolo needs ultralytics ({exc.name} is missing): install the [yolo] extra, "
            "pip install 'samlabel[yolo]' (AGPL-3.0)"
        ) from None
    finally:
        # ultralytics replaces PIL.Image.open process-wide with a wrapper that tries to pip-install pi-heif when a
        # file is not an image; the decode operator must see PIL's own error for untrusted files.
        Image.open = pil_open
    if any(SETTINGS.get(key) for key in _OFF):
        SETTINGS.update(dict.fromkeys(_OFF, False))
    return ultralytics


@dataclass(frozen=True)
class Detections:
    """The boxes of one image, in original pixels."""

    boxes_xyxy: np.ndarray
    """[K,4] float32."""
    scores: np.ndarray
    """[K] float32 detector confidence."""
    classes: np.ndarray
    """[K] int64 class index."""


class Detector:
    """A YOLO model loaded once; :meth:`detect` runs a batch of images through ``predict``."""

    def __init__(self, cfg: YoloConfig, storage: StorageConfig, device: str, cache_dir: str | None = None) -> None:
        self.cfg = cfg
        self.model, self.sha256 = load_yolo(cfg, storage, cache_dir)
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        self.class_ids = class_indices(cfg.classes, self.names)
        self.device = device

    def detect(self, images: Sequence[np.ndarray], original_hw: np.ndarray) -> list[Detections]:
        """RGB uint8 images [h,w,3] (already resized for the detector) → detections in original pixels."""
        if not len(images):
            return []
        results = self.model.predict(
            source=[np.ascontiguousarray(image[:, :, ::-1]) for image in images],  # ultralytics wants BGR arrays
            imgsz=self.cfg.imgsz,
            conf=self.cfg.conf,
            iou=self.cfg.iou,
            max_det=self.cfg.max_det,
            classes=self.class_ids,
            device=self.device,
            verbose=False,
        )
        out = []
        for image, result, (h, w) in zip(images, results, np.asarray(original_hw).tolist(), strict=True):
            scale = np.array([w / image.shape[1], h / image.shape[0]] * 2, np.float32)
            boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4) * scale
            out.append(
                Detections(
                    snap_to_border(boxes, (h, w), self.cfg.border_snap_px),
                    result.boxes.conf.cpu().numpy().astype(np.float32).reshape(-1),
                    result.boxes.cls.cpu().numpy().astype(np.int64).reshape(-1),
                )
            )
        return out


def load_yolo(cfg: YoloConfig, storage: StorageConfig, cache_dir: str | None = None) -> tuple[object, str]:
    """The YOLO model of ``cfg.weights`` (an ultralytics ``.pt``) and the file's sha256; one-line ValueErrors."""
    if not cfg.weights:
        raise ValueError("--prompts yolo needs detector weights: --set yolo.weights=PATH|s3://...|hf://... (a .pt)")
    ultralytics = import_ultralytics(cache_dir)
    path = fetch(cfg.weights, storage, cache_dir)
    digest = sha256_file(path)
    if cfg.weights_sha256 and cfg.weights_sha256.strip().lower() != digest:
        raise ValueError(f"{cfg.weights}: sha256 is {digest}, expected {cfg.weights_sha256.strip().lower()}")
    if path.suffix != ".pt":
        raise ValueError(f"{cfg.weights}: yolo.weights must be an ultralytics .pt file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the error line says it all
            warnings.simplefilter("ignore")
            model = ultralytics.YOLO(str(path.resolve()), task="detect")
    except Exception as exc:
        unpickling = _unpickling_error(exc)
        accepted = "ultralytics detector checkpoints holding only ultralytics' model classes and tensors"
        refusal = None if unpickling is None else refused_pickle(unpickling, accepted)
        if refusal is not None:  # the detector's own classes are allowed; anything else is refused
            raise ValueError(f"{cfg.weights}: {refusal}") from None
        reason = " ".join(str(exc).split()).replace("ERROR ❌️ ", "")[:300]
        raise ValueError(
            f"{cfg.weights}: cannot be loaded as a YOLO detector ({type(exc).__name__}: {reason})"
        ) from None
    if getattr(model, "task", "detect") != "detect":
        raise ValueError(f"{cfg.weights}: is a YOLO {model.task} model, not a detector")
    return model, digest


def _unpickling_error(exc: BaseException) -> pickle.UnpicklingError | None:
    """The UnpicklingError behind ``exc`` (ultralytics may wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, pickle.UnpicklingError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def class_indices(classes: Sequence[int | str], names: dict[int, str]) -> list[int] | None:
    """``yolo.classes`` (indices or names) → class indices, or None for all; ValueError naming an unknown class."""
    if not classes:
        return None
    by_name = {v: k for k, v in names.items()}
    out = []
    for c in classes:
        index = c if isinstance(c, int) else by_name.get(str(c))
        if index not in names:
            raise ValueError(f"yolo.classes: {c!r} is not a class of the detector (it has {len(names)} classes)")
        out.append(int(index))
    return out


def detector_categories(names: dict[int, str], class_ids: list[int] | None) -> list[dict]:
    """COCO categories of the detector's (selected) classes: id = class index + 1, name = the class name."""
    ids = sorted(names) if class_ids is None else sorted(set(class_ids))
    return [{"id": i + 1, "name": names[i], "supercategory": ""} for i in ids]


def snap_to_border(boxes: np.ndarray, image_hw: tuple[int, int], snap_px: float) -> np.ndarray:
    """Box sides within ``snap_px`` of the image border move onto it (MobileSAMv2); [K,4] XYXY → [K,4]."""
    h, w = image_hw
    out = boxes.copy()
    out[:, 0] = np.where(out[:, 0] <= snap_px, 0.0, out[:, 0])
    out[:, 1] = np.where(out[:, 1] <= snap_px, 0.0, out[:, 1])
    out[:, 2] = np.where(out[:, 2] >= w - snap_px, float(w), out[:, 2])
    out[:, 3] = np.where(out[:, 3] >= h - snap_px, float(h), out[:, 3])
    return out


def resize_for_detector(image: np.ndarray, imgsz: int) -> np.ndarray:
    """The image with its long side ``imgsz`` (PIL bilinear, as the encoder input), never enlarged."""
    return image if max(image.shape[:2]) <= imgsz else resize_longest_side(image, imgsz)
