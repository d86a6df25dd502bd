"""Which threshold rules are in force at start: the rules file, or rules set at run time.

Rules come from two places: `thresholds.rules_file` (the operator's file) and
`PUT /admin/thresholds` (run time). Both are kept in the state directory with the
SHA-256 of the rules file as it was when they were set, and the precedence is:

* Run-time rules win across restarts while the rules file is unchanged: a restart
  never silently undoes an operator's change (anomaly detection turned off by a
  restart was the defect this fixes).
* Once the rules file's content differs from what it was when the run-time rules
  were set, the operator has edited it since: the file wins, and the run-time
  rules are superseded (logged, audited).
* No rules file is a content of its own ("" as its hash): adding one supersedes.
* With the Redis store, run-time changes are refused (every process must judge
  by the same rules), so only the file counts.

Plain functions over values; the stores keep `RulesRecord` and `RulesAuditEntry`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final, Literal

import msgspec

from thresholds.config import ThresholdConfig, ThresholdConfigError, decode_threshold_config

RulesSource = Literal["file", "admin"]
NO_FILE: Final = ""  # the hash recorded when no rules file is configured


class RulesRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The rules in force, as the operator gave them (TOML, byte for byte)."""

    source: RulesSource
    toml: bytes
    file_sha256: str  # of the rules file when these were set (NO_FILE: none configured)
    set_at: dt.datetime
    set_by: str  # the admin client's address, or the rules file's path


class RulesAuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: dt.datetime
    source: RulesSource
    by: str
    rules: int
    attribute_limits: int
    file_sha256: str
    note: str
    toml: bytes  # the rules themselves (base64 in JSON)


class RulesChoice(msgspec.Struct, frozen=True, kw_only=True):
    config: ThresholdConfig
    record: RulesRecord
    # To store (with this audit entry) because what is in force changed; None: as stored.
    audit: RulesAuditEntry | None
    log_message: str
    # Run-time rules were set and are not in force now: an operator should know.
    superseded: bool = False


def file_sha256(raw: bytes | None) -> str:
    return NO_FILE if raw is None else hashlib.sha256(raw).hexdigest()


def audit_entry(record: RulesRecord, config: ThresholdConfig, note: str) -> RulesAuditEntry:
    return RulesAuditEntry(
        at=record.set_at,
        source=record.source,
        by=record.set_by,
        rules=len(config.rules),
        attribute_limits=len(config.attribute_limits),
        file_sha256=record.file_sha256,
        note=note,
        toml=record.toml,
    )


def choose_rules(
    file_raw: bytes | None,
    file_name: str,
    stored: RulesRecord | None,
    now: dt.datetime,
    *,
    runtime_allowed: bool = True,
) -> RulesChoice:
    """The rules in force at start. Raises ThresholdConfigError if the file is invalid."""
    digest = file_sha256(file_raw)
    try:
        from_file = decode_threshold_config(file_raw or b"")
    except ThresholdConfigError as exc:
        raise ThresholdConfigError(f"thresholds.rules_file {file_name}: {exc}") from None
    file_record = RulesRecord(
        source="file", toml=file_raw or b"", file_sha256=digest, set_at=now, set_by=file_name
    )
    if stored is not None and stored.source == "admin" and stored.file_sha256 == digest:
        kept = f"run-time rules set at {stored.set_at.isoformat()} by {stored.set_by}"
        if not runtime_allowed:
            return RulesChoice(
                config=from_file,
                record=file_record,
                audit=audit_entry(file_record, from_file, f"store is shared: {kept} not used"),
                log_message=f"threshold rules from {file_name}; {kept} are not used with "
                "the Redis store",
                superseded=True,
            )
        try:
            config = decode_threshold_config(stored.toml)
        except ThresholdConfigError as exc:  # refused by a newer gateway's checks
            note = f"{kept} no longer decode ({exc}); the rules file is in force"
            return RulesChoice(
                config=from_file,
                record=file_record,
                audit=audit_entry(file_record, from_file, note),
                log_message=note,
                superseded=True,
            )
        return RulesChoice(
            config=config,
            record=stored,
            audit=None,
            log_message=f"threshold {kept} are in force (the rules file is unchanged since)",
        )
    if stored is not None and stored.source == "admin":
        note = (
            f"the rules file changed after the run-time rules set at "
            f"{stored.set_at.isoformat()} by {stored.set_by}: the file is in force"
        )
        return RulesChoice(
            config=from_file,
            record=file_record,
            audit=audit_entry(file_record, from_file, note),
            log_message=note,
            superseded=True,
        )
    if stored is None or stored.file_sha256 != digest:
        if file_raw is None:
            note = "no rules file: no rules"
        else:
            note = "rules file loaded" if stored is None else "rules file changed"
        return RulesChoice(
            config=from_file,
            record=file_record,
            audit=audit_entry(file_record, from_file, note),
            log_message=f"threshold rules from {file_name} ({note})",
        )
    return RulesChoice(
        config=from_file,
        record=stored,
        audit=None,
        log_message=f"threshold rules from {file_name}",
    )
