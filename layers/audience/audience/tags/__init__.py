"""Tags: the org's tag registry, contact counts per tag, and tagging contacts one by one or in bulk."""
