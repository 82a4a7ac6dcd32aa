"""Training: SAM-style end-to-end training (``sam_train``) on COCO-format instance masks."""
