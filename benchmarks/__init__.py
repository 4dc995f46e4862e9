"""Benchmarks of the Audience functions: figures to watch over time, not pass/fail tests (see BENCHMARKS.md)."""
