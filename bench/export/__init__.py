"""Export benchmark: the audit service's memory while it streams a large log."""
