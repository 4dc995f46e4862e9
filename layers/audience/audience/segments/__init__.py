"""Segments: static and dynamic audiences, the rule language that defines dynamic ones, and event history."""
