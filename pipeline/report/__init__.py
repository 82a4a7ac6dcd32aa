"""The review report of a labeling run (``report/`` next to its outputs) and overlay rendering."""
