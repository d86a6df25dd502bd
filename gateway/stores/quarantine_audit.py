"""The operator's decisions on quarantined requests: who released or deleted one, and why.

Rows of `quarantine_audit`, beside `quarantine` in the same SQLite file. The store
(gateway/stores/quarantine.py) writes a decision inside the transaction that changes the
request's state, so the audit holds a decision exactly when its effect happened, and
purges a request's decisions with the request.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Final, Literal

import msgspec

from gateway.stores.times import from_us

AuditAction = Literal["release", "delete"]

AUDIT_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS quarantine_audit (
    event_ref INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_audit_by_ref ON quarantine_audit (event_ref);
"""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Who decided (the admin client's address) and why (free text, may be empty)."""

    by: str
    reason: str = ""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    event_ref: int
    at: dt.datetime
    action: AuditAction
    by: str
    reason: str


def record_decision(
    conn: sqlite3.Connection, ref: int, at_us: int, action: AuditAction, decision: Decision | None
) -> None:
    """In the caller's transaction; nothing when no decision was given."""
    if decision is not None:
        conn.execute(
            "INSERT INTO quarantine_audit (event_ref, at_us, action, by, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            (ref, at_us, action, decision.by, decision.reason),
        )


def decisions_of(conn: sqlite3.Connection, ref: int) -> list[AuditEntry]:
    """One request's decisions, oldest first."""
    rows = conn.execute(
        "SELECT event_ref, at_us, action, by, reason FROM quarantine_audit"
        " WHERE event_ref = ? ORDER BY rowid",
        (ref,),
    )
    return [
        AuditEntry(event_ref=r[0], at=from_us(r[1]), action=r[2], by=r[3], reason=r[4])
        for r in rows
    ]


def purge_orphans(conn: sqlite3.Connection) -> None:
    """Drop the decisions of requests no longer kept (expired or purged)."""
    conn.execute(
        "DELETE FROM quarantine_audit WHERE event_ref NOT IN (SELECT event_ref FROM quarantine)"
    )
