"""Evaluation protocols of the SAM and EfficientViT-SAM papers: point and box prompts against ground truth, mask AR of
segment-everything runs, COCO metrics (docs/model.md lists them)."""
