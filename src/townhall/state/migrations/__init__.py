"""Alembic migrations of the durable records; run by `townhall.state.records.open_records`."""
