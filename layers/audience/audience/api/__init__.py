"""The REST API: a FastAPI application served on Lambda through Mangum."""
