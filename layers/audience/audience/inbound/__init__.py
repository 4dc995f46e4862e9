"""Inbound processing: what the channels send (messages, statuses, preferences) applied to contacts."""
