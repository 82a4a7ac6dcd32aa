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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.config.sections import StorageConfig, TextConfig
from pipeline.models.hub_folder import check_safetensors, folder_sha256, import_transformers, model_folder
from pipeline.ontology import NamedClass, categories_of, read_classes
from pipeline.prompts.yolo import Detections

FIELD = "text.weights"


def load_detector_files(folder: Path, weights: bool = True):
    """(config, processor, model) from ``folder``, from disk only, safetensors only; ``weights=False`` leaves the
    model out (None): what the driver's check needs, without loading the weights on the driver. ValueError for a
    folder that is not an OWLv2 detector, or whose text model's width does not fit its class head."""
    transformers = import_transformers("--prompts text")
    check_safetensors(folder, FIELD)
    try:
        config = transformers.Owlv2Config.from_pretrained(folder, local_files_only=True)
        processor = transformers.Owlv2Processor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{FIELD} {folder}: not an OWLv2 detector folder ({str(exc).splitlines()[0]})") from None
    if config.projection_dim != config.text_config.hidden_size:
        raise ValueError(
            f"{FIELD} {folder}: the text model gives {config.projection_dim}-wide query embeddings, the class head "
            f"takes {config.text_config.hidden_size}"
        )
    model = None
    if weights:
        try:
            model = transformers.Owlv2ForObjectDetection.from_pretrained(
                folder, local_files_only=True, use_safetensors=True
            ).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{FIELD} {folder}: cannot load the detector ({str(exc).splitlines()[0]})") from None
    return config, processor, model


def tokenize_queries(processor, config, classes: Sequence[NamedClass]) -> dict[str, torch.Tensor]:
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
        classes: Sequence[NamedClass],
        storage: StorageConfig,
        device: torch.device,
        cache_dir: str | None = None,
    ) -> None:
        if not cfg.weights:
            raise ValueError("--prompts text needs the detector: --set text.weights=FOLDER|s3://...|hf://owner/repo")
        self.cfg, self.classes, self.device = cfg, list(classes), torch.device(device)
        config, self.processor, self.model = load_detector_files(model_folder(cfg.weights, storage, cache_dir, FIELD))
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


def check_text_prompts(text: TextConfig, storage: StorageConfig, cache_dir: str | None) -> tuple[str, list[dict]]:
    """On the driver, before any image is read: the classes, the detector folder, its config, processor and
    safetensors files (the weights themselves load in the actors) and the queries' token lengths. Returns the
    identity of the detector and classes (sha256) and the COCO categories."""
    classes = read_classes(text, storage)
    folder = model_folder(text.weights, storage, cache_dir, FIELD)
    config, processor, _ = load_detector_files(folder, weights=False)
    tokenize_queries(processor, config, classes)
    identity = {"detector": folder_sha256(folder), "classes": [dataclasses.asdict(c) for c in classes]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest(), categories_of(classes)
