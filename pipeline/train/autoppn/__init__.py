"""AutoPPN head training on Ray Train: datasets, embeddings, targets and losses, the worker loop, validation and
the run (``training``)."""
