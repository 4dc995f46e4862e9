"""Orgs (tenants), their API keys, custom field definitions and request rate limits."""
