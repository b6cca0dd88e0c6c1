"""Alembic migrations of the inventory schema, applied to head on open."""
