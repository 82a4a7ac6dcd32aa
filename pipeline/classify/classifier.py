"""The zero-shot mask classifier: CLIP or SigLIP (transformers' ``CLIPModel`` / ``SiglipModel``, the optional
``[text]`` extra) from a model folder (:mod:`pipeline.models.hub_folder`).

The class texts are embedded once per actor: each query of a class read through ``classify.template``, the
normalised embeddings averaged per class and normalised again (prompt ensembling, CLIP's zero-shot recipe). A crop's
class scores are the model's own: CLIP's softmax over the classes of its scaled cosine similarities, SigLIP's sigmoid
of each class's scaled and shifted similarity. A mask takes its best class when that score reaches the class's
threshold (its own, else ``classify.min_score``); otherwise it is not named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.config.sections import ClassifyConfig, StorageConfig
from pipeline.models.hub_folder import check_safetensors, folder_sha256, import_transformers, model_folder
from pipeline.ontology import NamedClass, categories_of, read_classes

FIELD = "classify.weights"
GATE_SCORE_DIFF = 0.02
GATE_CROPS = 16
KINDS = ("clip", "siglip")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ClassifierFiles:
    """A classifier folder read from disk: config, tokenizer, input size and normalisation (on 0..1), and the model
    (None when only checked)."""

    config: object
    tokenizer: object
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model: torch.nn.Module | None = None


def load_classifier_files(folder: Path, weights: bool = True) -> ClassifierFiles:
    """The folder's files, from disk only, safetensors only; ``weights=False`` leaves the model out (the driver's
    check). ValueError for a folder that is not a CLIP or SigLIP model, or whose text and image embeddings differ in
    width."""
    transformers = import_transformers("classify")
    check_safetensors(folder, FIELD)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        if config.model_type not in KINDS:
            raise ValueError(f"model_type {config.model_type!r}")
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{FIELD} {folder}: not a CLIP or SigLIP model folder ({message})") from None
    text_width, image_width = embedding_widths(config)
    if text_width != image_width:
        raise ValueError(
            f"{FIELD} {folder}: the text model gives {text_width}-wide embeddings, the image model {image_width}"
        )
    model = None
    if weights:
        try:
            model = transformers.AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{FIELD} {folder}: cannot load the model ({str(exc).splitlines()[0]})") from None
    return ClassifierFiles(
        config,
        tokenizer,
        int(config.vision_config.image_size),
        tuple(float(v) for v in processor.image_mean),
        tuple(float(v) for v in processor.image_std),
        model,
    )


def embedding_widths(config) -> tuple[int, int]:
    """(text, image) embedding widths of a CLIP or SigLIP config."""
    if config.model_type == "clip":
        return config.projection_dim, config.projection_dim
    return getattr(
        config.text_config, "projection_size", config.text_config.hidden_size
    ), config.vision_config.hidden_size


def class_texts(classes: Sequence[NamedClass], template: str) -> list[str]:
    """Every query of every class read through ``template``, in class order."""
    return [template.replace("{}", query) for c in classes for query in c.queries]


def tokenize_texts(files: ClassifierFiles, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """The texts padded to the text model's length, as SigLIP was trained (CLIP reads its end token wherever it is);
    ValueError for a text over that length."""
    limit = files.config.text_config.max_position_embeddings
    for text in texts:
        length = len(files.tokenizer(text)["input_ids"])
        if length > limit:
            raise ValueError(f"classify classes: text {text!r} is {length} tokens, over the classifier's {limit}")
    return files.tokenizer(list(texts), padding="max_length", max_length=limit, truncation=True, return_tensors="pt")


class ZeroShotClassifier:
    """Class scores of crops; the class texts are embedded once, here."""

    def __init__(
        self,
        cfg: ClassifyConfig,
        classes: Sequence[NamedClass],
        storage: StorageConfig,
        device: torch.device,
        cache_dir: str | None = None,
    ) -> None:
        if not cfg.weights:
            raise ValueError("classify needs the classifier: --set classify.weights=FOLDER|s3://...|hf://owner/repo")
        self.cfg, self.classes, self.device = cfg, list(classes), torch.device(device)
        files = load_classifier_files(model_folder(cfg.weights, storage, cache_dir, FIELD))
        self.model = files.model.to(self.device)
        self.sigmoid = files.config.model_type == "siglip"
        self.image_size = files.image_size
        self.mean = torch.tensor(files.mean, device=self.device)
        self.std = torch.tensor(files.std, device=self.device)
        self.thresholds = torch.tensor(
            [cfg.min_score if c.threshold is None else c.threshold for c in self.classes], device=self.device
        )
        tokens = tokenize_texts(files, class_texts(self.classes, cfg.template))
        owner = torch.tensor([k for k, c in enumerate(self.classes) for _ in c.queries], device=self.device)
        with torch.inference_mode():
            texts = _features(self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()}))
            texts = torch.nn.functional.normalize(texts, dim=-1)
            summed = torch.zeros((len(self.classes), texts.shape[1]), device=self.device).index_add_(0, owner, texts)
            self.class_embeds = torch.nn.functional.normalize(summed, dim=-1)  # [C,D]
        self.autocast: torch.dtype | None = None
        self.note = ""
        if cfg.precision == "auto":
            self.autocast, self.note = self._pick_autocast()

    @property
    def precision(self) -> str:
        return "fp32" if self.autocast is None else "bf16"

    def _pick_autocast(self) -> tuple[torch.dtype | None, str]:
        """bf16 when it runs on the device and passes the gate on probe crops, with a note saying what was chosen."""
        from pipeline.runtime.capability import bf16_unsupported_reason

        reason = bf16_unsupported_reason(self.device)
        if reason is not None:
            return None, f"classifier in fp32: {reason}"
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand(GATE_CROPS, 3, self.image_size, self.image_size, generator=generator)
        probe = ((probe.to(self.device) - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)).float()
        exact = self.scores(probe)
        self.autocast = torch.bfloat16
        diff = float((self.scores(probe) - exact).abs().max())
        if diff > GATE_SCORE_DIFF:
            return None, f"classifier in fp32: bf16 class scores differ by {diff:.3f} on probe crops"
        return torch.bfloat16, f"classifier in bf16 (class scores within {diff:.3f} of fp32 on probe crops)"

    @torch.inference_mode()
    def scores(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N,C] class scores of normalised inputs [N,3,S,S] (S: ``image_size``)."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            images = _features(self.model.get_image_features(pixel_values=pixel_values.to(self.device)))
        images = images.float()
        logits = torch.nn.functional.normalize(images, dim=-1) @ self.class_embeds.T * self.model.logit_scale.exp()
        if self.sigmoid:
            return torch.sigmoid(logits + self.model.logit_bias)
        return logits.softmax(dim=-1)

    def name(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best class index [N] (int64, -1 where the score is below its class's threshold) and its score [N]."""
        best = self.scores(pixel_values).max(dim=-1)
        named = best.values >= self.thresholds[best.indices]
        return torch.where(named, best.indices, -1), best.values


def _features(output) -> torch.Tensor:
    """transformers 5 returns the projected features as an output's pooler_output, earlier versions as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def classify_categories(cfg: ClassifyConfig, classes: Sequence[NamedClass]) -> list[dict]:
    """COCO categories of a named run: the classes (ids from 1), then "unknown" unless such masks are dropped."""
    categories = categories_of(classes)
    if cfg.below == "unknown":
        categories.append({"id": len(classes) + 1, "name": UNKNOWN, "supercategory": ""})
    return categories


def read_classify_classes(cfg: ClassifyConfig, storage: StorageConfig) -> list[NamedClass]:
    """The classes of the classify section; ValueError for a bad list or a class called "unknown" while unnamed masks
    are kept under that name."""
    classes = read_classes(cfg, storage, "classify")
    if cfg.below == "unknown" and any(c.name == UNKNOWN for c in classes):
        raise ValueError(f"classify classes: {UNKNOWN!r} names the masks below their threshold; rename the class")
    return classes


def check_classifier(cfg: ClassifyConfig, storage: StorageConfig, cache_dir: str | None) -> tuple[str, list[dict]]:
    """On the driver, before any image is read: the classes, the classifier folder, its config, tokenizer, image
    processor and safetensors headers (the weights load in the actors) and the texts' token lengths. Returns the
    identity of the classifier and classes (sha256) and the run's COCO categories."""
    classes = read_classify_classes(cfg, storage)
    if not cfg.weights:
        raise ValueError("classify needs the classifier: --set classify.weights=FOLDER|s3://prefix/|hf://owner/repo")
    if "{}" not in cfg.template:
        raise ValueError(f"classify.template {cfg.template!r} needs a {{}} where the class name goes")
    folder = model_folder(cfg.weights, storage, cache_dir, FIELD)
    files = load_classifier_files(folder, weights=False)
    tokenize_texts(files, class_texts(classes, cfg.template))
    identity = {
        "classifier": folder_sha256(folder),
        "classes": [dataclasses.asdict(c) for c in classes],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return digest, classify_categories(cfg, classes)
