"""Slot bookkeeping without sockets: caps, the longest-idle reclaimed first, busy ones never."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge.connection_slots import ConnectionSlots, Refusal, Slot


def admit(slots: ConnectionSlots, peer: str, reclaimed: list[str], name: str) -> Slot | Refusal:
    return slots.admit(peer, lambda: reclaimed.append(name))


def test_the_longest_idle_connection_makes_room() -> None:
    slots, reclaimed = ConnectionSlots(3, 10), []
    a, b, c = (admit(slots, "p", reclaimed, n) for n in "abc")
    assert isinstance(a, Slot) and isinstance(b, Slot) and isinstance(c, Slot)
    slots.idle(b)
    slots.idle(a)  # idle after b: b has waited longest
    d = admit(slots, "q", reclaimed, "d")
    assert isinstance(d, Slot) and reclaimed == ["b"] and b.reclaimed
    assert slots.open_count == 3 and slots.idle_count == 1


def test_busy_connections_are_never_reclaimed() -> None:
    slots, reclaimed = ConnectionSlots(2, 10), []
    a, b = (admit(slots, "p", reclaimed, n) for n in "ab")
    assert isinstance(a, Slot) and isinstance(b, Slot)
    slots.idle(a)
    slots.busy(a)  # a request began arriving
    assert admit(slots, "q", reclaimed, "c") is Refusal.FULL
    assert reclaimed == []


def test_the_per_peer_cap_comes_first_and_frees_on_release() -> None:
    slots, reclaimed = ConnectionSlots(10, 2), []
    a, _ = (admit(slots, "p", reclaimed, n) for n in "ab")
    assert isinstance(a, Slot)
    assert admit(slots, "p", reclaimed, "c") is Refusal.PER_PEER
    assert isinstance(admit(slots, "q", reclaimed, "d"), Slot)
    slots.release(a)
    slots.release(a)  # idempotent: a reclaimed slot is released twice
    assert slots.peer_count("p") == 1
    assert isinstance(admit(slots, "p", reclaimed, "e"), Slot)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["admit", "idle", "busy", "release"]), st.integers(0, 30)),
        max_size=120,
    )
)
def test_the_caps_hold_whatever_happens(steps: list[tuple[str, int]]) -> None:
    max_open, max_per_peer = 5, 3
    slots = ConnectionSlots(max_open, max_per_peer)
    live: list[Slot] = []
    for action, n in steps:
        if action == "admit":
            got = slots.admit(f"peer{n % 3}", lambda: None)
            if isinstance(got, Slot):
                live.append(got)
            live = [s for s in live if not s.reclaimed]
        elif live:
            slot = live[n % len(live)]
            if action == "idle":
                slots.idle(slot)
            elif action == "busy":
                slots.busy(slot)
            else:
                slots.release(slot)
                live.remove(slot)
        assert slots.open_count == len(live) <= max_open
        assert slots.idle_count <= slots.open_count
        for peer in ("peer0", "peer1", "peer2"):
            assert slots.peer_count(peer) == sum(s.peer == peer for s in live) <= max_per_peer
