"""Training: the AutoPPN head on a frozen EfficientViT-SAM encoder (``python -m jobs.train_autoppn``) and SAM-style
end-to-end training (``sam_train``, ``python -m jobs.train_sam``) on COCO-format instance masks."""
