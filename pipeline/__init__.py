"""samlabel library: models, runtimes, IO and pure helpers; the Ray wiring lives in ``operators.graph``."""
