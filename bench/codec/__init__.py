"""Codec benchmark: decode + validate throughput per content mode, next to the official SDK."""
