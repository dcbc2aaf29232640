"""The audit service: a durable, deduplicated, tamper-evident log of CloudEvents.

It accepts CloudEvents from any producer over HTTP (and Kafka), stores each exactly
once in an append-only, hash-chained table, and serves them back: query, live tail,
export, stats and ``eventaudit verify``.
"""
