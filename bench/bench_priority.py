"""Top-ups against bulk reads on one overloaded hub: `python -m bench.bench_priority`.

One Communications Hub through the embedded simulator, serving one command at a time
with a fixed service time, slower than the arrival of bulk reads (DCC_SCHEDULED, from a
few Users); prepayment top-ups (PREPAYMENT_AND_CRITICAL, another User) arrive now and
then. Runs on trio's MockClock with autojump, so an hour of hub time takes seconds.
Prints the queue-wait percentiles of each kind (wait = answer time - service time) with
prioritisation, and the same load with every command in one class from one User (plain
FIFO) for comparison. Numbers, not verdicts: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from dataclasses import dataclass, field

import trio
import trio.testing

from gateway.core.device import DeviceCommand, DeviceOutcome, Priority
from gateway.core.registry import Device, Inventory
from gateway.core.simulator_config import HAN_VARIANTS, WAN_VARIANTS, LinkProfile, SimulatorConfig
from gateway.devkit.simulator import Simulator
from gateway.edge.transport import QueueFull
from mmc.identifiers import RequestId
from parse_correlate.commands import CommandFacts, DeviceType, build_command

HUB = "00-DB-12-34-56-78-C0-01"
METER = "00-DB-12-34-56-78-C0-81"
BULK_USERS = ("90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00", "90-B3-D5-1F-30-04-00-00")
TOP_UP_USER = "90-B3-D5-1F-30-03-00-00"
START = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class MockWallClock:
    def now(self) -> dt.datetime:
        return START + dt.timedelta(seconds=trio.current_time())

    def monotonic(self) -> float:
        return trio.current_time()


@dataclass
class Tally:
    waits: list[float] = field(default_factory=list)
    timed_out: int = 0
    refused: int = 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def simulator(service_seconds: float) -> Simulator:
    wan = LinkProfile(
        distribution="fixed",
        latency_median_seconds=service_seconds,
        latency_p99_seconds=service_seconds,
    )
    han = LinkProfile(distribution="fixed", latency_median_seconds=0, latency_p99_seconds=0)
    config = SimulatorConfig(
        wan_profiles=dict.fromkeys(WAN_VARIANTS, wan),
        han_profiles=dict.fromkeys(HAN_VARIANTS, han),
    )
    inventory = Inventory(
        [
            Device(device_id=HUB, device_type="CHF", status="commissioned", wan_variant="North"),
            Device(device_id=METER, device_type="ESME", status="commissioned", chf_id=HUB),
        ]
    )
    return Simulator(lambda: inventory, config, MockWallClock(), random.Random(1))


def command(srv: str, user: str, counter: int, priority: Priority) -> DeviceCommand:
    request_id = RequestId(user, METER, counter)
    facts = CommandFacts(device_type=DeviceType.ESME)
    gbcs = build_command(srv, request_id, facts, originator_counter=counter, now=START).gbcs
    return DeviceCommand(
        request_id=request_id,
        srv_variant=srv,
        device_id=METER,
        device_type="ESME",
        hub_id=HUB,
        gbcs=gbcs,
        priority=priority,
    )


async def scenario(args: argparse.Namespace, prioritised: bool) -> dict[str, Tally]:
    sim = simulator(args.service_seconds)
    tallies = {"top-up": Tally(), "bulk": Tally()}

    async def send(kind: str, cmd: DeviceCommand) -> None:
        tally = tallies[kind]
        started = trio.current_time()
        try:
            reply = await sim.send(cmd)
        except QueueFull:
            tally.refused += 1
            return
        if reply.outcome is DeviceOutcome.RESPONDED:
            tally.waits.append(trio.current_time() - started - args.service_seconds)
        else:
            tally.timed_out += 1

    arrivals = random.Random(2)  # Poisson arrivals, the same in both scenarios

    async def bulk_reads(nursery: trio.Nursery) -> None:
        n = 0
        while trio.current_time() < args.duration_seconds:
            user = BULK_USERS[n % len(BULK_USERS)]
            nursery.start_soon(send, "bulk", command("4.1.1", user, n, Priority.DCC_SCHEDULED))
            n += 1
            await trio.sleep(arrivals.expovariate(args.bulk_per_second))

    async def top_ups(nursery: trio.Nursery) -> None:
        n = 10**9  # counters apart from the bulk reads'
        while trio.current_time() < args.duration_seconds:
            await trio.sleep(arrivals.expovariate(1.0 / args.top_up_interval_seconds))
            n += 1
            if prioritised:
                cmd = command("2.2", TOP_UP_USER, n, Priority.PREPAYMENT_AND_CRITICAL)
            else:
                cmd = command("2.2", BULK_USERS[0], n, Priority.DCC_SCHEDULED)
            nursery.start_soon(send, "top-up", cmd)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulk_reads, nursery)
        nursery.start_soon(top_ups, nursery)
    return tallies


def report(title: str, tallies: dict[str, Tally]) -> None:
    print(title)
    print(f"  {'kind':8} {'answered':>8} {'E21':>5} {'refused':>7}"
          f" {'p50 s':>8} {'p90 s':>8} {'p99 s':>8} {'max s':>8}")  # fmt: skip
    for kind, tally in tallies.items():
        w = tally.waits
        print(
            f"  {kind:8} {len(w):8d} {tally.timed_out:5d} {tally.refused:7d}"
            f" {percentile(w, 0.5):8.2f} {percentile(w, 0.9):8.2f}"
            f" {percentile(w, 0.99):8.2f} {max(w, default=0.0):8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-seconds", type=float, default=3600.0)
    parser.add_argument("--service-seconds", type=float, default=2.0)
    parser.add_argument("--bulk-per-second", type=float, default=1.0)
    parser.add_argument("--top-up-interval-seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(
        f"one hub, capacity 1, service {args.service_seconds:g} s; Poisson arrivals: bulk "
        f"reads {args.bulk_per_second:g}/s from {len(BULK_USERS)} Users, a top-up every "
        f"{args.top_up_interval_seconds:g} s on average; {args.duration_seconds:g} s of hub time "
        "(simulator defaults: queue timeout 600 s, 1000 queued per class)"
    )
    for title, prioritised in (
        ("prioritised (top-ups PREPAYMENT_AND_CRITICAL, bulk DCC_SCHEDULED):", True),
        ("plain FIFO (every command DCC_SCHEDULED from one User), for comparison:", False),
    ):
        began = time.perf_counter()
        clock = trio.testing.MockClock(autojump_threshold=0)
        tallies = trio.run(scenario, args, prioritised, clock=clock)
        report(title, tallies)
        print(f"  ({time.perf_counter() - began:.1f} s wall clock)")


if __name__ == "__main__":
    main()
