"""Durable SQLite journals: the group-commit writer the outbox and quarantine share."""
