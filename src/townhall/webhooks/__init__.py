"""Outgoing webhooks: signed POSTs for space.scheduled / started / ended and stage changes,
delivered at least once from a durable outbox, with retries."""
