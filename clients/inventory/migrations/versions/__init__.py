"""Alembic revisions of the inventory schema, oldest first."""
