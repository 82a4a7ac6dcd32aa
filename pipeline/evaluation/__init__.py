"""Evaluation protocols of the SAM and EfficientViT-SAM papers (``reference/autoppn_distillation_eval.md`` §4-5)."""
