"""Benchmark of the users service: creation next to raw argon2id, reads, outbox drain, latency, memory."""
