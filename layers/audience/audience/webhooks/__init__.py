"""The webhook acknowledge path: authenticate, route to a tenant, enqueue. Imports as little as possible."""
