"""Hot-path cost of the access decision and the replay guard.

    python -m bench.bench_access [--rounds N]

Prints microseconds per call (best of several rounds, so other load on the machine
inflates nothing but the spread) and the cost of a replay decision taken in the
shared SQLite file, alone and with group commit. No asserts: speed is reported, not
tested.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from gateway.core.access import AccessDecision, AccessRequest, decide
from gateway.core.replay_rules import ReplayGuard
from gateway.devkit.estate import DCC_EUI64, default_inventory, default_users
from gateway.stores.replay import SharedReplayGuard
from mmc.catalogue import Endpoint, Srv, load_catalogue
from mmc.identifiers import RequestId

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
SUPPLIER_2 = "90-B3-D5-1F-30-03-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
CALLS_PER_ROUND = 50_000


def _per_call_us(call: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(CALLS_PER_ROUND):
            call()
        best = min(best, (time.perf_counter_ns() - start) / CALLS_PER_ROUND)
    return best / 1000


def bench_decisions(rounds: int) -> None:
    registry, inventory = default_users(), default_inventory()
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    srvs = load_catalogue("5.4").srvs
    read, tariff, firmware = srvs["4.1.1"], srvs["1.1.1"], srvs["11.1"]

    def case(header: AccessRequest, srv: Srv, endpoint: Endpoint) -> Callable[[], AccessDecision]:
        return lambda: decide(header, srv, registry, inventory, now, endpoint, DCC_EUI64)

    cases = {
        "accept 4.1.1 CV 1 (device)": case(
            AccessRequest(RequestId(SUPPLIER, ESME, 1), 1, "4.1.1"), read, Endpoint.SEND
        ),
        "accept 4.1.1 CV 2 (local delivery)": case(
            AccessRequest(RequestId(SUPPLIER, ESME, 1), 2, "4.1.1"), read, Endpoint.SEND
        ),
        "accept 1.1.1 CV 4 (critical)": case(
            AccessRequest(RequestId(SUPPLIER, ESME, 1), 4, "1.1.1"), tariff, Endpoint.TRANSFORM
        ),
        "accept 11.1 CV 8 (3 body devices)": case(
            AccessRequest(
                RequestId(SUPPLIER, DCC_EUI64, 1),
                8,
                "11.1",
                (ESME, "00-DB-12-34-56-78-90-A1", "00-DB-12-34-56-78-90-A2"),
            ),
            firmware,
            Endpoint.NON_DEVICE,
        ),
        "refuse E4 (not the supplier)": case(
            AccessRequest(RequestId(SUPPLIER_2, ESME, 1), 1, "4.1.1"), read, Endpoint.SEND
        ),
        "refuse E1 (unknown User)": case(
            AccessRequest(RequestId("90-B3-D5-1F-30-0F-00-00", ESME, 1), 1, "4.1.1"),
            read,
            Endpoint.SEND,
        ),
    }
    for name, call in cases.items():
        print(f"decide  {name:<38} {_per_call_us(call, rounds):6.2f} us")


def bench_replay(rounds: int) -> None:
    guard = ReplayGuard()
    counter = iter(range(10**12))

    def admit() -> object:
        return guard.admit(RequestId(SUPPLIER, ESME, next(counter)), 1)

    print(f"replay  {'admit (fresh counter)':<38} {_per_call_us(admit, rounds):6.2f} us")


async def _durable(path: Path, requests: int) -> tuple[float, float]:
    durable = await SharedReplayGuard.open(path)
    counter = iter(range(10**12))

    async def one() -> None:
        await durable.admit(RequestId(SUPPLIER, ESME, next(counter)), 1)

    start = time.perf_counter()
    for _ in range(50):  # one at a time: a transaction (and fsync) per request
        await one()
    serial = (time.perf_counter() - start) / 50
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(requests):
            nursery.start_soon(one)
    grouped = (time.perf_counter() - start) / requests
    await durable.aclose()
    return serial * 1e6, grouped * 1e6


def bench_durable() -> None:
    with tempfile.TemporaryDirectory() as folder:
        serial, grouped = trio.run(_durable, Path(folder) / "replay.sqlite", 2000)
    print(f"replay  {'admit (shared file), one at a time':<38} {serial:8.1f} us")
    print(f"replay  {'admit (shared file), 2000 concurrent':<38} {grouped:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bench_decisions(args.rounds)
    bench_replay(args.rounds)
    bench_durable()


if __name__ == "__main__":
    main()
