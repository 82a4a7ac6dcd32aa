"""The model's weights: which file (configured or the card's), where downloads are cached, and loading them strictly
(on the driver as a check before any image is read, in a worker to run)."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config.sections import ModelConfig, StorageConfig
from pipeline.models import EfficientViTSam, create_model, model_card


def resolve_weights(model: ModelConfig) -> str | None:
    """The weight URI to load: the configured one, else the model card's default (None = random test model)."""
    return model.weights or model_card(model.name).default_weights


def expected_sha256(model: ModelConfig) -> str | None:
    """The sha256 the weights must have: the configured one, else the card's for its own default weights."""
    return model.weights_sha256 or (None if model.weights else model_card(model.name).default_weights_sha256)


def cache_dir(model: ModelConfig) -> Path:
    return Path(model.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "samlabel"))


def load_model(model: ModelConfig, storage: StorageConfig) -> tuple[EfficientViTSam, str | None]:
    """Builds the model and loads its weights (strict, weights_only); returns it with the weights' sha256."""
    sam = create_model(model.name)
    return sam, _load_weights(sam, model, storage)


def verify_weights(model: ModelConfig, storage: StorageConfig) -> str | None:
    """Fetches and checks the weight file on the driver (strict keys and shapes) before any image is read.

    Returns its sha256, or None for a test model without weights. Raises CheckpointError (a ValueError).
    """
    structure = create_model(model.name, device="meta")  # keys and shapes only, no memory
    return _load_weights(structure, model, storage)


def _load_weights(sam: EfficientViTSam, model: ModelConfig, storage: StorageConfig) -> str | None:
    from pipeline.models.checkpoint import load_checkpoint

    weights = resolve_weights(model)
    if weights is None:
        return None
    return load_checkpoint(
        sam,
        weights,
        storage=storage,
        cache_dir=model.cache_dir,
        expected_sha256=expected_sha256(model),
        model_name=model.name,
    )
