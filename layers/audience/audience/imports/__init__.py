"""Contact imports."""
