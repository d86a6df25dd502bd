"""Install and Leave (§1.1): Communications Hubs installed without SM WAN, until it comes.

Reactive (¶23): the coverage database showed SM WAN, the installer found none, and the
supplier told the DCC with Communications Hub Status Update - Install No SM WAN (8.14.2).
That notification starts the DCC's remedy under SEC F7.18: in most cases no more than
90 days without WAN. Proactive (¶25, licence condition 49.8): the database shows no SM WAN
now but forecasts it before the end of 2020 (available "prior to 1 January 2021"); where
it forecasts none by then, Install and Leave is not permitted. Either way, once the
coverage database shows SM WAN (a coverage update), the supplier is told by a DCC alert so
it can establish the HAN (¶24, ¶26; licence 49.9, 49.15). "A coverage update" means one
that changes what the database says about the hub's premises: a reactive case starts where
the database already showed SM WAN, so loading that same entry again (a restart, a weekly
feed with no news there) is not the remedy and owes no alert.

A case is a small state machine: `apply` takes a case (or None) and an event and returns
the next case and the alerts to send; a step the table does not allow raises
InstallLeaveError. Time is always passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Final, Literal

import msgspec

from gateway.core.techspec.coverage import (
    CoverageTable,
    PremisesCoverage,
    PremisesKey,
    fingerprint,
)

DAY: Final = dt.timedelta(days=1)
DEFAULT_REMEDY_DAYS: Final = 90  # ¶23, SEC F7.18
DEFAULT_PROACTIVE_FORECAST_BEFORE: Final = dt.date(2021, 1, 1)  # ¶25; licence 49.8


class InstallLeavePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remedy_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = DEFAULT_REMEDY_DAYS
    # Proactive Install and Leave only where SM WAN is forecast before this day.
    proactive_forecast_before: dt.date = DEFAULT_PROACTIVE_FORECAST_BEFORE


CaseKind = Literal["reactive", "proactive"]
CaseState = Literal["awaiting_wan", "wan_available", "closed"]
CloseReason = Literal["commissioned", "hub_returned", "operator"]


class InstallLeaveError(ValueError):
    """An event the case's state does not allow (the caller's mistake, not ours)."""


class InstallLeaveCase(msgspec.Struct, frozen=True, kw_only=True):
    hub_id: str
    user_id: str  # the supplier that notified the DCC, and gets the alert
    mpxn: str
    premises: PremisesKey | None  # None: the address is not known, no coverage match
    kind: CaseKind
    state: CaseState
    notified_at: dt.datetime
    remedy_deadline: dt.datetime | None = None  # reactive only
    anticipated_date: dt.date | None = None  # proactive: when SM WAN was forecast
    wan_available_at: dt.datetime | None = None
    alert_sent_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    close_reason: CloseReason | None = None
    # coverage.fingerprint of the premises' entry when notified (None: not in the database)
    coverage_seen: str | None = None
    duis_version: str | None = None  # of the notification: the alert is built under it

    @property
    def open(self) -> bool:
        return self.state != "closed"


class WanAvailableAlert(msgspec.Struct, frozen=True, kw_only=True):
    """The DCC alert owed to the supplier when SM WAN reaches a hub it left without."""

    user_id: str
    hub_id: str
    mpxn: str
    available_at: dt.datetime
    duis_version: str | None = None  # None: the newest version served


class Notified(msgspec.Struct, frozen=True, kw_only=True, tag="notified"):
    user_id: str
    hub_id: str
    mpxn: str
    premises: PremisesKey | None
    kind: CaseKind
    anticipated_date: dt.date | None = None
    at: dt.datetime
    coverage_seen: str | None = None
    duis_version: str | None = None


class CoverageArrived(msgspec.Struct, frozen=True, kw_only=True, tag="coverage_arrived"):
    at: dt.datetime


class AlertSent(msgspec.Struct, frozen=True, kw_only=True, tag="alert_sent"):
    at: dt.datetime


class Closed(msgspec.Struct, frozen=True, kw_only=True, tag="closed"):
    reason: CloseReason
    at: dt.datetime


Event = Notified | CoverageArrived | AlertSent | Closed

# (state before, event) -> state after. None: no case for the hub yet.
_TRANSITIONS: Final[dict[tuple[CaseState | None, type[Event]], CaseState]] = {
    (None, Notified): "awaiting_wan",
    ("closed", Notified): "awaiting_wan",  # the hub is left without WAN again: a new case
    ("awaiting_wan", CoverageArrived): "wan_available",
    ("wan_available", AlertSent): "wan_available",
    ("awaiting_wan", Closed): "closed",
    ("wan_available", Closed): "closed",
}


class Transition(msgspec.Struct, frozen=True):
    case: InstallLeaveCase
    alerts: tuple[WanAvailableAlert, ...] = ()
    changed: bool = True


class Classification(msgspec.Struct, frozen=True):
    kind: CaseKind | None  # None: refused
    anticipated_date: dt.date | None = None
    refusal: str | None = None


def classify_no_wan_install(
    coverage: PremisesCoverage | None, policy: InstallLeavePolicy
) -> Classification:
    """Reactive or proactive Install and Leave, or not permitted, from the database.

    Coverage shown (or the premises unknown to it, so the supplier's check cannot be
    contradicted): reactive (¶23). No coverage now, forecast before
    `policy.proactive_forecast_before`: proactive (¶25). Otherwise refused.
    """
    if coverage is None or coverage.available:
        return Classification("reactive")
    forecast = coverage.earliest_anticipated()
    if forecast is not None and forecast < policy.proactive_forecast_before:
        return Classification("proactive", forecast)
    when = f"forecast for {forecast}" if forecast else "not forecast"
    return Classification(
        None,
        forecast,
        f"SM WAN is not available and {when}: proactive Install and Leave needs it forecast "
        f"before {policy.proactive_forecast_before} (¶25)",
    )


def apply(case: InstallLeaveCase | None, event: Event, policy: InstallLeavePolicy) -> Transition:
    """The next case for `event`, with the alerts it owes."""
    if isinstance(event, Notified) and case is not None and case.open:
        if case.user_id == event.user_id:  # a repeated notification: the clock runs on
            return Transition(case, changed=False)
        raise InstallLeaveError(
            f"hub {case.hub_id} is already left without SM WAN, notified by {case.user_id}"
        )
    if isinstance(event, AlertSent) and case is not None and case.alert_sent_at is not None:
        return Transition(case, changed=False)
    state = None if case is None else case.state
    after = _TRANSITIONS.get((state, type(event)))
    if after is None:
        raise InstallLeaveError(f"{type(event).__name__} not allowed when {state or 'no case'}")
    if isinstance(event, Notified):
        deadline = None
        if event.kind == "reactive":
            deadline = event.at + policy.remedy_days * DAY
        return Transition(
            InstallLeaveCase(
                hub_id=event.hub_id,
                user_id=event.user_id,
                mpxn=event.mpxn,
                premises=event.premises,
                kind=event.kind,
                state=after,
                notified_at=event.at,
                remedy_deadline=deadline,
                anticipated_date=event.anticipated_date,
                coverage_seen=event.coverage_seen,
                duis_version=event.duis_version,
            )
        )
    assert case is not None  # every other event needs a case (checked by the table)
    if isinstance(event, CoverageArrived):
        alert = WanAvailableAlert(
            user_id=case.user_id,
            hub_id=case.hub_id,
            mpxn=case.mpxn,
            available_at=event.at,
            duis_version=case.duis_version,
        )
        return Transition(
            msgspec.structs.replace(case, state=after, wan_available_at=event.at), (alert,)
        )
    if isinstance(event, AlertSent):
        return Transition(msgspec.structs.replace(case, alert_sent_at=event.at))
    return Transition(
        msgspec.structs.replace(case, state=after, closed_at=event.at, close_reason=event.reason)
    )


def coverage_update(
    cases: Iterable[InstallLeaveCase],
    coverage: CoverageTable,
    now: dt.datetime,
    policy: InstallLeavePolicy,
) -> list[Transition]:
    """The cases a new coverage table reaches: SM WAN shown at their premises by an entry
    that differs from the one the database held when the hub was notified."""
    reached = []
    for case in cases:
        if case.state != "awaiting_wan" or case.premises is None:
            continue
        found = coverage.lookup(case.premises)
        if found is not None and found.available and fingerprint(found) != case.coverage_seen:
            reached.append(apply(case, CoverageArrived(at=now), policy))
    return reached


class RemedyProgress(msgspec.Struct, frozen=True):
    day: int  # 1 on the day of notification; the window's last day is `remedy_days`
    days_remaining: int  # whole days after today still in the window; 0 on its last day
    overdue: bool  # the window has passed with no SM WAN


def remedy_progress(notified_at: dt.datetime, now: dt.datetime, remedy_days: int) -> RemedyProgress:
    """Where `now` falls in the remedy window [notified_at, notified_at + remedy_days)."""
    elapsed = max(now - notified_at, dt.timedelta(0))  # a clock behind the record: day 1
    day = elapsed // DAY + 1
    return RemedyProgress(day, max(0, remedy_days - day), day > remedy_days)


class CaseReport(msgspec.Struct, frozen=True, kw_only=True):
    hub_id: str
    user_id: str
    mpxn: str
    kind: CaseKind
    state: CaseState
    notified_at: dt.datetime
    remedy_deadline: dt.datetime | None
    day: int | None
    days_remaining: int | None
    overdue: bool
    anticipated_date: dt.date | None
    alert_sent: bool


def report(cases: Iterable[InstallLeaveCase], now: dt.datetime) -> list[CaseReport]:
    """Hubs still without SM WAN (or whose alert is not yet sent), most urgent first:
    overdue reactive cases, then reactive by days remaining, then proactive by forecast."""
    rows = []
    for case in cases:
        if not case.open:
            continue
        progress = None
        if case.remedy_deadline is not None:  # reactive: the window fixed when it opened
            window_days = (case.remedy_deadline - case.notified_at) // DAY
            progress = remedy_progress(case.notified_at, now, window_days)
        rows.append(
            CaseReport(
                hub_id=case.hub_id,
                user_id=case.user_id,
                mpxn=case.mpxn,
                kind=case.kind,
                state=case.state,
                notified_at=case.notified_at,
                remedy_deadline=case.remedy_deadline,
                day=progress.day if progress else None,
                days_remaining=progress.days_remaining if progress else None,
                overdue=progress.overdue if progress else False,
                anticipated_date=case.anticipated_date,
                alert_sent=case.alert_sent_at is not None,
            )
        )
    rows.sort(key=_urgency)
    return rows


def _urgency(row: CaseReport) -> tuple[int, int, dt.date, str]:
    if row.kind == "reactive":
        remaining = row.days_remaining if row.days_remaining is not None else 0
        return (0 if row.overdue else 1, remaining, dt.date.min, row.hub_id)
    return (2, 0, row.anticipated_date or dt.date.max, row.hub_id)
