"""Training of the AutoPPN head on a frozen EfficientViT-SAM encoder (``python -m jobs.train_autoppn``)."""
