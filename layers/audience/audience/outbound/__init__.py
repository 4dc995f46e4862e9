"""Outbound webhooks: per-org endpoints that receive the stack's domain events, signed, at least once."""
