"""Text prompts: class names become boxes through OWLv2 (transformers' ``Owlv2ForObjectDetection``, the optional
``[text]`` extra), and the box path makes their masks.

OWLv2 rather than Grounding DINO: its text side is CLIP's, run once per actor for every query of every class and kept
(per image only the vision tower, the class head and the box head run); a box's class is decided per query by the
same head for any number of classes, with no text-length limit shared among classes as Grounding DINO's one prompt
has; it is plain PyTorch without custom attention kernels, and its tokenizer is CLIP's, as the zero-shot classifiers'.

The detector's folder (config, safetensors weights, tokenizer and preprocessor files) is fetched first: a local
folder as it is, an ``s3://`` prefix file by file into the cache, ``hf://owner/repo[@revision]`` as a snapshot of
those files only; transformers then loads it from disk with ``use_safetensors=True`` (no pickles) and never reaches
the network.

Per image: the processor pads the image to a square and resizes it; each patch gets a box and a score per query;
as transformers' own post-processing, a patch's score is its best query's sigmoid, and its class that query's class.
Then the class's threshold, per-class NMS and the per-image cap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import SafetensorError, safe_open

from pipeline.config.sections import StorageConfig, TextConfig
from pipeline.io.storage import fetch, list_files, parse_hf_uri, read_bytes, sha256_file, uri_scheme
from pipeline.prompts.yolo import Detections

MODEL_FILE_PATTERNS = ("*.json", "*.txt", "*.safetensors")


@dataclass(frozen=True)
class TextClass:
    """One named class: its COCO name, the text queries that find it, and its own threshold (or None)."""

    name: str
    queries: tuple[str, ...]
    threshold: float | None = None


def read_classes(text: TextConfig, storage: StorageConfig) -> list[TextClass]:
    """The classes of ``text.classes`` or ``text.file``, in order; ValueError naming the problem."""
    if text.classes and text.file:
        raise ValueError("set text.classes or text.file, not both")
    if text.file:
        try:
            entries = yaml.safe_load(read_bytes(text.file, storage, max_bytes=1 << 20))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"text.file {text.file}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        classes = _classes_from_file(entries, text.file)
    else:
        classes = [TextClass(str(name).strip(), (str(name).strip(),)) for name in text.classes]
    if not classes:
        raise ValueError("--prompts text needs class names: --set text.classes=[person, forklift] or text.file")
    names = [c.name for c in classes]
    queries = [q for c in classes for q in c.queries]
    for what, values in (("class name", names), ("query", queries)):
        if any(not v for v in values):
            raise ValueError(f"text classes: an empty {what}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"text classes: {what} {repeated[0]!r} is given more than once")
    return classes


def _classes_from_file(entries: object, source: str) -> list[TextClass]:
    if isinstance(entries, dict):
        entries = [{name: value} for name, value in entries.items()]
    if not isinstance(entries, list):
        raise ValueError(f"text.file {source}: expected a list or a mapping of classes")
    classes = []
    for entry in entries:
        if isinstance(entry, str):
            classes.append(TextClass(entry.strip(), (entry.strip(),)))
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"text.file {source}: each class is a name or one 'name: ...' entry, got {entry!r}")
        ((name, value),) = entry.items()
        threshold = None
        if isinstance(value, dict):
            threshold = value.get("threshold")
            value = value.get("queries", [name])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError(f"text.file {source}: class {name!r} needs a list of queries")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"text.file {source}: class {name!r} has threshold {threshold!r}, not in [0, 1]")
        classes.append(TextClass(str(name).strip(), tuple(str(q).strip() for q in value), threshold))
    return classes


def import_transformers():
    """``transformers``; ValueError when the extra is missing."""
    try:
        import transformers
    except ImportError as exc:
        raise ValueError(
            f"--prompts text needs transformers ({exc.name} is missing): install the [text] extra, "
            "pip install 'samlabel[text]'"
        ) from None
    return transformers


def model_folder(uri: str, storage: StorageConfig, cache_dir: str | None) -> Path:
    """A local folder with the detector's files (see the module doc); ValueError naming ``uri``."""
    scheme = uri_scheme(uri)
    if scheme == "hf":
        return _hf_snapshot(uri, cache_dir)
    if scheme == "s3":
        prefix = uri.rstrip("/") + "/"
        files = [f for f, _ in list_files(prefix, storage, recursive=False) if _wanted(f)]
        if not files:
            raise ValueError(f"text.weights {uri}: no model files under this prefix")
        root = Path(cache_dir or Path.home() / ".cache" / "samlabel").expanduser()
        folder = root / "text" / hashlib.sha256(prefix.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(fetch(file, storage, cache_dir), folder / file.rsplit("/", 1)[-1])
        return folder
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise ValueError(f"text.weights {uri}: not a folder (give the detector's folder, s3:// prefix or hf:// repo)")
    return path


def _wanted(name: str) -> bool:
    return any(Path(name).match(pattern) for pattern in MODEL_FILE_PATTERNS)


def _hf_snapshot(uri: str, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download

    rest = uri[len("hf://") :]
    owner_repo = rest.split("/", 2)
    if len(owner_repo) < 2:
        raise ValueError(f"{uri}: expected hf://owner/repo[@revision]")
    repo_id, revision, _ = parse_hf_uri(f"hf://{owner_repo[0]}/{owner_repo[1]}/x")
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=list(MODEL_FILE_PATTERNS)
            )
        )
    except Exception as exc:
        raise ValueError(f"cannot download {uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def folder_sha256(folder: Path) -> str:
    """sha256 over the folder's model files (names and contents), for the run identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and _wanted(p.name)):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def load_detector_files(folder: Path, weights: bool = True):
    """(config, processor, model) from ``folder``, from disk only, safetensors only; ``weights=False`` leaves the
    model out (None): what the driver's check needs, without loading the weights on the driver."""
    transformers = import_transformers()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"text.weights {folder}: no .safetensors weights (pickled checkpoints are not loaded)")
    try:
        for path in files:  # the headers, so that a damaged file is found without loading the tensors
            with safe_open(path, "pt") as handle:
                handle.keys()
        config = transformers.Owlv2Config.from_pretrained(folder, local_files_only=True)
        processor = transformers.Owlv2Processor.from_pretrained(folder, local_files_only=True)
        model = None
        if weights:
            model = transformers.Owlv2ForObjectDetection.from_pretrained(
                folder, local_files_only=True, use_safetensors=True
            ).eval()
    except (OSError, ValueError, SafetensorError) as exc:
        raise ValueError(f"text.weights {folder}: not an OWLv2 detector folder ({str(exc).splitlines()[0]})") from None
    return config, processor, model


def tokenize_queries(processor, config, classes: Sequence[TextClass]) -> dict[str, torch.Tensor]:
    """Every query of every class, tokenized as the processor does; ValueError for a query over the text model's
    length (``config``: the detector's)."""
    limit = config.text_config.max_position_embeddings
    queries = [q for c in classes for q in c.queries]
    for query in queries:
        length = len(processor.tokenizer(query)["input_ids"])
        if length > limit:
            raise ValueError(f"text classes: query {query!r} is {length} tokens, over the detector's {limit}")
    return processor.tokenizer(queries, padding="max_length", max_length=limit, return_tensors="pt")


class TextDetector:
    """Boxes of the named classes in images; the queries' text embeddings are computed once, here."""

    def __init__(
        self,
        cfg: TextConfig,
        classes: Sequence[TextClass],
        storage: StorageConfig,
        device: torch.device,
        cache_dir: str | None = None,
    ) -> None:
        if not cfg.weights:
            raise ValueError("--prompts text needs the detector: --set text.weights=FOLDER|s3://...|hf://owner/repo")
        self.cfg, self.classes, self.device = cfg, list(classes), torch.device(device)
        config, self.processor, self.model = load_detector_files(model_folder(cfg.weights, storage, cache_dir))
        self.model.to(self.device)
        tokens = tokenize_queries(self.processor, config, self.classes)
        self.query_class = torch.as_tensor(
            [k for k, c in enumerate(self.classes) for _ in c.queries], device=self.device
        )
        self.thresholds = torch.as_tensor(
            [cfg.box_thresh if c.threshold is None else c.threshold for c in self.classes], device=self.device
        )
        with torch.inference_mode():
            self.query_embeds = self.model.owlv2.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )  # [Q,D]
            if not isinstance(self.query_embeds, torch.Tensor):  # newer transformers return an output object
                self.query_embeds = self.query_embeds.pooler_output

    @torch.inference_mode()
    def raw(
        self, images: Sequence[np.ndarray], original_hw: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every patch's box (XYXY, original pixels, not clipped), score and best query, as transformers'
        post-processing computes them: [B,P,4], [B,P], [B,P]."""
        writable = [np.array(image) for image in images]  # the rows hand read-only views, which torch will not wrap
        pixels = self.processor.image_processor(images=writable, return_tensors="pt")["pixel_values"]
        feature_map = self.model.image_embedder(pixel_values=pixels.to(self.device))[0]  # [B,h,w,D]
        b, h, w, d = feature_map.shape
        feats = feature_map.reshape(b, h * w, d)
        queries = self.query_embeds[None].expand(b, -1, -1)
        mask = torch.ones(queries.shape[:2], dtype=torch.bool, device=self.device)
        logits = self.model.class_predictor(feats, queries, mask)[0]  # [B,P,Q]
        boxes = self.model.box_predictor(feats, feature_map)  # [B,P,4] cx, cy, w, h of the padded square
        best = logits.max(dim=-1)
        cx, cy, bw, bh = boxes.unbind(-1)
        corners = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)
        side = torch.as_tensor(original_hw, device=self.device).max(dim=1).values.float()  # the padded square
        return corners * side[:, None, None], torch.sigmoid(best.values), best.indices

    def detect(self, images: Sequence[np.ndarray], original_hw: np.ndarray) -> list[Detections]:
        """One :class:`Detections` per image: the classes' boxes over their thresholds, clipped to the image, per-class
        NMS, at most ``max_boxes_per_image``, highest score first; ``classes`` index ``self.classes``."""
        from torchvision.ops import batched_nms

        boxes, scores, query = self.raw(images, original_hw)
        found = []
        for i, (h, w) in enumerate(np.asarray(original_hw).tolist()):
            classes = self.query_class[query[i]]
            keep = scores[i] > self.thresholds[classes]
            b, s, c = boxes[i][keep], scores[i][keep], classes[keep]
            b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], -1)
            if self.cfg.nms_thresh < 1.0:
                order = batched_nms(b, s, c, self.cfg.nms_thresh)
            else:
                order = torch.argsort(s, descending=True, stable=True)
            order = order[: self.cfg.max_boxes_per_image]
            found.append(
                Detections(
                    b[order].cpu().numpy().astype(np.float32),
                    s[order].cpu().numpy().astype(np.float32),
                    c[order].cpu().numpy().astype(np.int64),
                )
            )
        return found


def text_categories(classes: Sequence[TextClass]) -> list[dict]:
    """COCO categories: the classes in the given order, ids from 1."""
    return [{"id": k + 1, "name": c.name, "supercategory": "object"} for k, c in enumerate(classes)]


def check_text_prompts(text: TextConfig, storage: StorageConfig, cache_dir: str | None) -> tuple[str, list[dict]]:
    """On the driver, before any image is read: the classes, the detector folder, its config, processor and
    safetensors files (the weights themselves load in the actors) and the queries' token lengths. Returns the
    identity of the detector and classes (sha256) and the COCO categories."""
    classes = read_classes(text, storage)
    folder = model_folder(text.weights, storage, cache_dir)
    config, processor, _ = load_detector_files(folder, weights=False)
    tokenize_queries(processor, config, classes)
    identity = {"detector": folder_sha256(folder), "classes": [dataclasses.asdict(c) for c in classes]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest(), text_categories(classes)
