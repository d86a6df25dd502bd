"""The techspec rules at the edge: the tables in force, the store, the clock, the alerts.

One object the composition root builds and hands to dispatch and the admin API. It keeps
the decoded tables and coverage database (immutable snapshots, swapped whole when the
operator replaces them through the store, so a request sees one consistent set) and runs
the core's decisions with the GB day taken from the injected clock. Until the operator
loads TS Applicability Tables, the version rules are not applied (requests pass as
before); until a coverage database is loaded, 12.1 answers "unknown premises" and 8.14.2
is accepted as reactive Install and Leave.

Alerts: when a coverage update reaches hubs left without SM WAN, each alert goes to the
`alert_sink` (gateway/edge/techspec_alerts.py: build, sign, put in the outbox); a case is
marked "alert sent" only once the sink has accepted it.

Files: `techspec.tables_file` and `techspec.coverage_file` are put in force at start when
they differ from what was last loaded from them (`put_file_in_force`), so a revision
loaded through the admin API stays in force across restarts until the operator changes
the file, as for the threshold rules.

Workers and nodes share the store; each keeps its own decoded snapshot and `run_refresh`
puts in force, every `techspec.refresh_seconds`, what another one stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Final

import msgspec
import trio
from lxml import etree

from gateway.core.clock import Clock
from gateway.core.config import TechspecConfig
from gateway.core.techspec.answers import (
    NoWanAnswer,
    VersionAnswer,
    commissioning_answer,
    no_wan_install_answer,
    pre_notification_answer,
    premises_key,
)
from gateway.core.techspec.bodies import (
    read_firmware_update,
    read_no_wan_install,
    read_pre_notification,
    read_wan_query,
)
from gateway.core.techspec.coverage import CoverageTable, decode_coverage
from gateway.core.techspec.estate import Estate
from gateway.core.techspec.firmware import FirmwareDecision, firmware_update
from gateway.core.techspec.install_leave import (
    AlertSent,
    CaseReport,
    Closed,
    CloseReason,
    CoverageArrived,
    Event,
    InstallLeaveCase,
    InstallLeaveError,
    Transition,
    WanAvailableAlert,
    apply,
    coverage_update,
    report,
)
from gateway.core.techspec.report import StandingRow, maintenance_report
from gateway.core.techspec.tables import Tables, decode_tables, table_warnings
from gateway.core.techspec.versions import gb_date
from gateway.core.techspec.wan_matrix import WanMatrixAnswer, wan_matrix_answer
from gateway.stores.operator_files import TechspecFile
from gateway.stores.techspec_store import (
    MAX_AUDIT_ROWS,
    TABLE_KINDS,
    CaseEvent,
    DocumentFormat,
    StaleCase,
    TableKind,
    TableRevision,
    TechspecStore,
    TechspecStoreError,
    document_digest,
)
from mmc.catalogue import Catalogue

log = logging.getLogger("duisgw.techspec")

# A case saved with compare-and-set is re-read and retried this often when another node
# moved it on meanwhile; beyond that the caller gets StaleCase (a 409 / a retry later).
MAX_CASE_RETRIES: Final = 3


class StoredTableUnreadable(Exception):
    """We broke: a stored revision no longer decodes (the code changed under it)."""

    def __init__(self, kind: TableKind, revision: int, reason: str) -> None:
        super().__init__(f"{kind} revision {revision} in the store no longer reads: {reason}")
        self.kind = kind
        self.revision = revision


AlertSink = Callable[[WanAvailableAlert], Awaitable[bool]]


class Loaded(msgspec.Struct, frozen=True):
    revision: TableRevision
    warnings: list[str]
    hubs_reached: int = 0  # coverage updates: hubs left without SM WAN that it reaches
    alerts_sent: int = 0  # ... whose supplier's alert is now in the outbox


class TechspecService:
    def __init__(
        self,
        store: TechspecStore,
        config: TechspecConfig,
        clock: Clock,
        *,
        alert_sink: AlertSink | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self._clock = clock
        self._alert_sink = alert_sink
        self.tables: Tables | None = None
        self.coverage: CoverageTable | None = None
        self._in_force: dict[TableKind, int] = {}  # revision numbers this process uses
        self._unreadable: set[tuple[TableKind, int]] = set()  # logged once each

    async def start(self, files: Iterable[TechspecFile] = ()) -> None:
        """Take the revisions in force from the store, put in force the configured files
        that changed since they were last loaded, and offer the alerts still owed.
        StoredTableUnreadable: the store holds what this code cannot read."""
        await self.refresh()
        for file in files:
            await self.put_file_in_force(
                file.kind, file.document, file.format, key=file.key, path=file.path
            )
        await self.send_pending_alerts()

    async def refresh(self) -> bool:
        """Put in force any newer revision another process stored (workers and nodes
        share the store; each keeps its own decoded snapshot). True if one changed."""
        changed = False
        for kind in TABLE_KINDS:
            current = await self._store.current(kind)
            if current is None or current.revision == self._in_force.get(kind):
                continue
            try:
                self._swap(current)
            except ValueError as exc:
                raise StoredTableUnreadable(kind, current.revision, str(exc)) from exc
            changed = True
        return changed

    async def run_refresh(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every `refresh_seconds`, put in force what another worker or node stored.
        A failure is logged (once per revision) and the tables in force are kept."""
        task_status.started()
        while True:
            await trio.sleep(self.config.refresh_seconds)
            try:
                await self.refresh()
            except StoredTableUnreadable as exc:
                key = (exc.kind, exc.revision)
                if key not in self._unreadable:
                    self._unreadable.add(key)
                    log.exception("keeping the %s in force", exc.kind)
            except TechspecStoreError:
                log.exception("techspec refresh failed; the tables in force are kept")

    async def put_file_in_force(
        self, kind: TableKind, document: bytes, fmt: DocumentFormat, *, key: str, path: str
    ) -> Loaded | None:
        """At start: store `document` (the file under config `key`) as the next revision
        unless it is what was last loaded from that key. None: left as it is. (Workers
        starting at the same moment may each store it: identical revisions, audited.)"""
        last = next((r for r in await self._store.audit(kind) if r.actor == key), None)
        if last is not None and last.sha256 == document_digest(document):
            return None
        return await self.replace(kind, document, fmt, actor=key, reason=f"start-up: {path}")

    # ------------------------------------------------------------ operator changes

    async def replace(
        self, kind: TableKind, document: bytes, fmt: DocumentFormat, *, actor: str, reason: str
    ) -> Loaded:
        """Decode (TablesError / CoverageError: the operator's file is wrong), store with
        its audit row, then put it in force. A coverage update then alerts the suppliers
        of hubs it reaches."""
        if kind == "techspec":
            tables = decode_tables(document, fmt=fmt, source="tables")
            summary = f"{sum(1 for _ in tables)} versions"
            warnings = table_warnings(tables)
        else:
            coverage = decode_coverage(document, fmt=fmt, source="coverage")
            summary = f"{len(coverage)} premises entries"
            warnings = []
        revision = await self._store.replace(
            kind, document, fmt, actor=actor, reason=reason, summary=summary, at=self._now()
        )
        self._swap(revision)
        log.warning("%s replaced by %s: revision %d, %s", kind, actor, revision.revision, summary)
        reached, sent = await self._coverage_arrived() if kind == "coverage" else (0, 0)
        return Loaded(revision, warnings, reached, sent)

    async def audit(self, kind: TableKind, *, limit: int = MAX_AUDIT_ROWS) -> list[TableRevision]:
        return await self._store.audit(kind, limit=limit)

    async def current(self, kind: TableKind) -> TableRevision | None:
        return await self._store.current(kind)

    def _swap(self, revision: TableRevision) -> None:
        if revision.kind == "techspec":
            self.tables = decode_tables(revision.document, fmt=revision.format)
        else:
            self.coverage = decode_coverage(revision.document, fmt=revision.format)
        self._in_force[revision.kind] = revision.revision

    # ------------------------------------------------------------ DUIS answers

    def wan_matrix(self, catalogue: Catalogue, body: etree._Element) -> WanMatrixAnswer:
        """12.1 (BodyFactError: the request is malformed)."""
        query = read_wan_query(body)
        found = None if self.coverage is None else self.coverage.lookup(query)
        return wan_matrix_answer(
            catalogue,
            query,
            found,
            unknown_premises_code=self.config.refusal_codes.unknown_premises,
        )

    def pre_notification(self, body: etree._Element) -> VersionAnswer:
        """12.2."""
        notice = read_pre_notification(body)
        if self.tables is None:
            return VersionAnswer("I0")
        return pre_notification_answer(
            self.tables, notice, self._today(), self.config.refusal_codes
        )

    def commissioning(self, estate: Estate, device_id: str) -> VersionAnswer:
        """8.1.1, checked when the Pre-Command is asked for (CV 4)."""
        if self.tables is None:
            return VersionAnswer("I0")
        return commissioning_answer(
            self.tables, estate, device_id, self._today(), self.config.refusal_codes
        )

    def firmware(
        self, estate: Estate, body: etree._Element, *, in_progress: Collection[str] = ()
    ) -> FirmwareDecision | None:
        """11.1; None while no tables are loaded (the caller keeps its own checks)."""
        request = read_firmware_update(body)
        if self.tables is None:
            return None
        return firmware_update(
            self.tables,
            estate,
            request.device_ids,
            request.firmware_version,
            self._today(),
            in_progress=in_progress,
        )

    async def no_wan_install(
        self, user_id: str, body: etree._Element, estate: Estate, *, duis_version: str | None
    ) -> NoWanAnswer:
        """8.14.2: record reactive or proactive Install and Leave, or refuse it (also when
        another supplier's case for the hub is open)."""
        install = read_no_wan_install(body)
        key = premises_key(estate, install.hub_id, install.mpxn)
        codes = self.config.refusal_codes
        answer = no_wan_install_answer(
            user_id,
            install,
            key,
            self.coverage,
            self._now(),
            self.config.install_leave,
            codes,
            duis_version=duis_version,
        )
        if answer.event is not None:
            try:
                await self._move(install.hub_id, answer.event)
            except InstallLeaveError as exc:
                answer = NoWanAnswer(codes.install_and_leave_not_permitted, None, str(exc))
        if answer.refusal is not None:
            log.info(
                "8.14.2 for hub %s from %s refused: %s", install.hub_id, user_id, answer.refusal
            )
        return answer

    # ------------------------------------------------------------ cases and reports

    async def close_case(self, hub_id: str, reason: CloseReason) -> InstallLeaveCase:
        return (await self._move(hub_id, Closed(reason=reason, at=self._now()))).case

    async def install_leave_report(self) -> list[CaseReport]:
        return report(await self._store.open_cases(), self._now())

    async def case(self, hub_id: str) -> tuple[InstallLeaveCase | None, list[CaseEvent]]:
        """A hub's case (open or closed) and every state it passed through."""
        return await self._store.get(hub_id), await self._store.history(hub_id)

    def maintenance_report(
        self, estate: Estate, *, warn_within_days: int | None = None
    ) -> list[StandingRow]:
        if self.tables is None:
            return []
        days = self.config.report_warn_within_days if warn_within_days is None else warn_within_days
        return maintenance_report(self.tables, estate, self._today(), warn_within_days=days)

    async def send_pending_alerts(self) -> int:
        """Offer the sink every alert still owed (after a restart, or a sink refusal)."""
        sent = 0
        for case in await self._store.open_cases():
            if case.state == "wan_available" and case.alert_sent_at is None:
                assert case.wan_available_at is not None  # set with the state
                alert = WanAvailableAlert(
                    user_id=case.user_id,
                    hub_id=case.hub_id,
                    mpxn=case.mpxn,
                    available_at=case.wan_available_at,
                    duis_version=case.duis_version,
                )
                sent += await self._deliver(alert)
        return sent

    async def _coverage_arrived(self) -> tuple[int, int]:
        """(hubs reached, alerts sent)."""
        assert self.coverage is not None
        now = self._now()
        reached = coverage_update(
            await self._store.open_cases(), self.coverage, now, self.config.install_leave
        )
        hubs = sent = 0
        for transition in reached:
            try:
                moved = await self._move(transition.case.hub_id, CoverageArrived(at=now))
            except (InstallLeaveError, StaleCase):
                continue  # another node moved it on meanwhile, and alerts from there
            hubs += 1
            for alert in moved.alerts:
                sent += await self._deliver(alert)
        return hubs, sent

    async def _deliver(self, alert: WanAvailableAlert) -> int:
        if self._alert_sink is None or not await self._alert_sink(alert):
            return 0
        await self._move(alert.hub_id, AlertSent(at=self._now()))
        return 1

    async def _move(self, hub_id: str, event: Event) -> Transition:
        """Apply `event` to the stored case, with compare-and-set and bounded retries."""
        for _ in range(MAX_CASE_RETRIES):
            before = await self._store.get(hub_id)
            transition = apply(before, event, self.config.install_leave)
            if not transition.changed:
                return transition
            try:
                await self._store.save(before, transition.case, at=self._now())
            except StaleCase:
                continue
            return transition
        raise StaleCase(f"the case of hub {hub_id} keeps changing; try again")

    def _now(self) -> dt.datetime:
        return self._clock.now()

    def _today(self) -> dt.date:
        return gb_date(self._clock.now())
