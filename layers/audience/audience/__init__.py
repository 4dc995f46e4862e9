"""Audience: contacts, segments and messaging for a business's audience, on AWS serverless."""
