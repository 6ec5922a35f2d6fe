"""Alembic migrations of the durable records; run by `townhall.state.database.migrate`."""
