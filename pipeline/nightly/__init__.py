"""Nightly incremental runs over a growing bucket: lock, ledger, consolidated view and the night's orchestration."""
