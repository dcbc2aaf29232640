"""Ingest benchmark: the audit service under wrk, next to the write-up's receiver and a bare insert loop."""
