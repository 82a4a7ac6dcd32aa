"""The label driver, in the order it runs: ``cli`` (flags), ``prepare`` (``rules``, ``prompt_model``, ``inputs``,
``identity``), ``output`` (open the folder), ``run`` (stream, then commit) and ``summary`` (result, exit codes)."""
