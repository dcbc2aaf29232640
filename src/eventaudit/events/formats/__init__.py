"""Event formats: how a CloudEvent becomes bytes and back (only JSON for now)."""
