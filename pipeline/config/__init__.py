"""Typed, strict configuration: the sections (``sections``), loading them from defaults, YAML and flags
(``loading``), range rules declared on fields (``rules``) and the generated defaults file (``document``)."""
