"""Shared state. Two kinds, two interfaces:

* `Records` (records.py): durable, transactional facts — accounts, Spaces, the stage roster, bans,
  raised hands, reminders, webhook deliveries — in SQL through SQLAlchemy 2 (SQLite by default,
  PostgreSQL at scale), schema managed by Alembic. The engine and migrations are database.py's, the
  webhook outbox webhook_outbox.py's, the errors errors.py's.
* `LiveState` (live.py): high-rate and transient things shared between processes — the ordered event
  log and its wake-ups, reaction counters, the approximate listener count, speaking flags, shared
  rate limits. Two implementations: embedded (in-process; one box) and Redis (many processes/nodes),
  chosen in the composition root and checked by one contract suite.
"""
