"""The notify protocol's sans-IO parts: the environment, the datagrams, the STATUS line,
and the `--workers` supervisor's state machine (gateway/worker_fleet.py)."""

from __future__ import annotations

import pytest

from gateway.core import sd_notify
from gateway.core.sd_notify import NotifyConfigError, StatusFacts
from gateway.core.worker_fleet import Phase, WorkerFleet


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/42", "\0/org/freedesktop/systemd1/notify/42"),
        ("", None),
    ],
)
def test_notify_address(value: str, address: str | None) -> None:
    assert sd_notify.notify_address({"NOTIFY_SOCKET": value}) == address
    assert sd_notify.notify_address({}) is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("relative/path", "only an absolute path or @abstract name"),
        ("vsock:2:1234", "only an absolute path or @abstract name"),
        ("/" + "x" * 120, "longer than 107 bytes"),
    ],
)
def test_unusable_notify_socket_is_refused(value: str, named: str) -> None:
    with pytest.raises(NotifyConfigError, match="NOTIFY_SOCKET") as caught:
        sd_notify.notify_address({"NOTIFY_SOCKET": value})
    assert named in str(caught.value)


def test_watchdog_is_ours_only_for_our_pid() -> None:
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "400000"}, pid=7) == 0.4
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "7"}, 7) == 0.4
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "8"}, 7) is None
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "0"}, 7) is None
    assert sd_notify.watchdog_seconds({}, 7) is None
    with pytest.raises(NotifyConfigError, match="not a number"):
        sd_notify.watchdog_seconds({"WATCHDOG_USEC": "soon"}, 7)
    assert sd_notify.ping_period(0.4) == pytest.approx(0.2)


def test_datagrams_round_trip_and_stay_one_line_per_assignment() -> None:
    fields = sd_notify.reloading(123456789, "reloading\ntrust and registry")
    datagram = sd_notify.encode(fields)
    assert datagram == b"RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading trust and registry"
    assert sd_notify.parse(datagram) == fields
    assert sd_notify.parse(b"READY=1\ngarbage\nlower=1\n=x") == {"READY": "1"}
    with pytest.raises(ValueError, match="not a notify assignment"):
        sd_notify.encode({"STATUS": "two\nlines"})
    assert len(sd_notify.status("x" * 1000)["STATUS"]) == sd_notify.MAX_STATUS_CHARS


def test_status_line_says_what_an_operator_asks_first() -> None:
    facts = StatusFacts(
        phase="serving",
        versions=("5.1", "5.4"),
        duis=("127.0.0.1", 8079),
        requests=12,
        refusals=3,
        outbox_pending=1,
    )
    assert sd_notify.status_line(facts) == (
        "serving: DUIS 5.1 5.4 on 127.0.0.1:8079; 12 requests answered, 3 refused; outbox 1 pending"
    )
    draining = StatusFacts(**{**_fields(facts), "phase": "draining", "in_flight": 4})
    assert sd_notify.status_line(draining).endswith("; 4 in flight")


def _fields(facts: StatusFacts) -> dict[str, object]:
    return {name: getattr(facts, name) for name in facts.__struct_fields__}


# ------------------------------------------------------------------- the worker fleet


def started(count: int, watchdog: float | None = None) -> WorkerFleet:
    fleet = WorkerFleet(count, watchdog)
    for index in range(count):
        fleet.spawned(index, now=0.0)
    return fleet


def test_ready_only_when_every_worker_is_ready() -> None:
    fleet = started(3)
    assert fleet.received(0, {"READY": "1"}, 1.0) == {}
    assert fleet.received(2, {"READY": "1"}, 1.0) == {}
    announced = fleet.received(1, {"READY": "1", "STATUS": "serving"}, 1.0)
    assert announced == {"READY": "1", "STATUS": "3 of 3 workers ready"}
    assert fleet.received(1, {"READY": "1"}, 2.0) == {}  # said once


def test_a_restarted_worker_does_not_repeat_ready() -> None:
    fleet = started(2)
    fleet.received(0, {"READY": "1"}, 1.0)
    assert fleet.received(1, {"READY": "1"}, 1.0)["READY"] == "1"
    fleet.exited(1)
    assert fleet.status_line() == "1 of 2 workers ready (1 gone)"
    fleet.spawned(1, 2.0)
    assert fleet.received(1, {"READY": "1"}, 3.0) == {}


def test_reload_goes_to_serving_workers_and_ends_when_each_is_ready_again() -> None:
    fleet = started(2)
    fleet.received(0, {"READY": "1"}, 1.0)
    serving, fields = fleet.reload_requested(monotonic_usec=5_000_000)
    assert serving == [0]  # worker 1 is still starting: it has no SIGHUP handler yet
    assert fields["RELOADING"] == "1" and fields["MONOTONIC_USEC"] == "5000000"
    assert fleet.received(0, {"RELOADING": "1"}, 2.0) == {}
    assert fleet.received(0, {"READY": "1"}, 2.1) == {}  # worker 1 not ready yet
    assert fleet.received(1, {"READY": "1"}, 2.2)["READY"] == "1"


def test_late_datagrams_of_an_exited_worker_are_ignored() -> None:
    fleet = started(1)
    fleet.exited(0)
    assert fleet.received(0, {"READY": "1"}, 1.0) == {}
    assert fleet.phase(0) is Phase.GONE


def test_no_ready_while_stopping() -> None:
    fleet = started(1)
    assert fleet.stop_requested()["STOPPING"] == "1"
    assert fleet.received(0, {"READY": "1"}, 1.0) == {}


def test_a_serving_worker_silent_past_the_watchdog_is_overdue() -> None:
    fleet = started(2, watchdog=1.0)
    assert fleet.overdue(now=50.0) == []  # starting workers may block while they load
    fleet.received(0, {"READY": "1"}, 10.0)
    fleet.received(1, {"READY": "1"}, 10.0)
    fleet.received(0, {"WATCHDOG": "1"}, 10.8)
    assert fleet.overdue(now=10.9) == []
    assert fleet.overdue(now=11.5) == [1]
    fleet.received(1, {"WATCHDOG": "1"}, 11.5)
    assert fleet.overdue(now=11.6) == []
    assert fleet.heartbeat() == {"STATUS": "2 of 2 workers ready", "WATCHDOG": "1"}
    assert "WATCHDOG" not in started(1).heartbeat()  # no watchdog asked for
