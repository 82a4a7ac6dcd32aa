"""SAM training as EfficientViT-SAM's stage 2: samples and prompts (``data``), losses and the loop (``training``)."""
