"""Compliance: the do-not-contact list, per-channel consent records and send eligibility."""
