"""Reminders that arrive: the mail a reminded person gets (notices, mailer, sender) and the
calendar entries anyone can add (calendar)."""
