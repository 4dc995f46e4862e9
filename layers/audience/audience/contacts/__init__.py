"""Contacts: the people an org reaches, their identities, fields, tags, status and activity."""
