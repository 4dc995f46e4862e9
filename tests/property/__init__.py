"""Property-based tests: the segment engine against an independent reference evaluator."""
