"""Generated datasets (COCO format) for training and evaluating without downloads."""
