"""Storage access (local paths, ``file://``, ``s3://``, ``hf://`` weights) and input listing."""
