"""Where the techspec state lives: the interfaces, and the records they keep.

Two stores, each behind a protocol so a Redis backend can stand beside the SQLite one
(gateway.stores.techspec_sqlite):

- `ReferenceTableStore`: the operator's reference tables (the TS Applicability Tables and
  the SM WAN coverage database), replaced whole as a SEC modification or a coverage
  update would, with an audit trail of every revision (who, when, why, digest).
- `InstallLeaveStore`: one Install and Leave case per hub (gateway.core.techspec.install_leave),
  saved with compare-and-set so two nodes cannot both move a case on, and a log of
  every state a case passed through.

Records are msgspec Structs; the stores hold documents and cases as bytes and never
interpret them: decoding and the rules stay in the core.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final, Literal, Protocol

import msgspec

from gateway.core.techspec.install_leave import InstallLeaveCase

TableKind = Literal["techspec", "coverage"]
TABLE_KINDS: Final[tuple[TableKind, ...]] = ("techspec", "coverage")
DocumentFormat = Literal["toml", "json"]
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024  # a whole coverage table; larger is refused
MAX_AUDIT_ROWS: Final = 1000  # rows per audit call
KEEP_DOCUMENTS: Final = 20  # revisions per kind whose document is kept (audit rows stay)
MAX_TEXT_CHARS: Final = 200  # actor and reason


class TechspecStoreError(Exception):
    """We broke: the database failed or its writer is not running."""


class StaleCase(Exception):
    """The case changed since it was read (another node moved it on): read it again."""


class TableRevision(msgspec.Struct, frozen=True, kw_only=True):
    kind: TableKind
    revision: int  # 1 for the first document of its kind, then +1 per replacement
    format: DocumentFormat
    loaded_at: dt.datetime
    actor: str  # who replaced it (the admin credential's name, "cli", ...)
    reason: str  # why: e.g. the SEC modification's reference
    summary: str  # what the core made of it, e.g. "3 versions, 1 compatibility row"
    sha256: str  # of the document
    size_bytes: int
    document: bytes  # empty for revisions older than the last KEEP_DOCUMENTS


class ReferenceTableStore(Protocol):
    async def current(self, kind: TableKind) -> TableRevision | None:
        """The revision in force, or None if none was ever loaded."""
        ...

    async def replace(
        self,
        kind: TableKind,
        document: bytes,
        fmt: DocumentFormat,
        *,
        actor: str,
        reason: str,
        summary: str,
        at: dt.datetime,
    ) -> TableRevision:
        """Store `document` as the next revision of `kind`, audited, in one transaction.
        The caller has already decoded it with the core: a store never holds a table
        the rules cannot read."""
        ...

    async def audit(self, kind: TableKind, *, limit: int = MAX_AUDIT_ROWS) -> list[TableRevision]:
        """Revisions newest first, without their documents."""
        ...


class CaseEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One state a case passed through (the Install and Leave audit trail)."""

    hub_id: str
    at: dt.datetime
    case: InstallLeaveCase


class InstallLeaveStore(Protocol):
    async def get(self, hub_id: str) -> InstallLeaveCase | None: ...

    async def save(
        self, before: InstallLeaveCase | None, after: InstallLeaveCase, *, at: dt.datetime
    ) -> None:
        """Store `after` if the hub's case is still `before` (None: no case yet); else
        raise StaleCase. Logs the new state."""
        ...

    async def open_cases(self) -> list[InstallLeaveCase]:
        """Every case not closed, oldest notification first."""
        ...

    async def history(self, hub_id: str) -> list[CaseEvent]: ...


class TechspecStore(ReferenceTableStore, InstallLeaveStore, Protocol):
    """Both stores in one object, as a backend provides them (gateway.stores.techspec)."""


_CASE_ENCODER: Final = msgspec.json.Encoder()
_CASE_DECODER: Final = msgspec.json.Decoder(InstallLeaveCase)


def encode_case(case: InstallLeaveCase) -> bytes:
    return _CASE_ENCODER.encode(case)


def decode_case(data: bytes) -> InstallLeaveCase:
    return _CASE_DECODER.decode(data)


def document_digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def check_revision_text(actor: str, reason: str, document: bytes) -> None:
    """Refuse what an audit row cannot hold (the caller's mistake: a 4xx at the edge)."""
    if not actor.strip() or len(actor) > MAX_TEXT_CHARS:
        raise ValueError(f"actor must be 1-{MAX_TEXT_CHARS} characters")
    if len(reason) > MAX_TEXT_CHARS:
        raise ValueError(f"reason must be at most {MAX_TEXT_CHARS} characters")
    if len(document) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"document is {len(document)} bytes; at most {MAX_DOCUMENT_BYTES}")
