"""Model definitions (what is computed): EfficientViT-SAM variants and the registry."""

from pipeline.models.registry import MODEL_NAMES, ModelCard, create_model, model_card, resolve_name
from pipeline.models.sam import EfficientViTSam

__all__ = ["MODEL_NAMES", "EfficientViTSam", "ModelCard", "create_model", "model_card", "resolve_name"]
