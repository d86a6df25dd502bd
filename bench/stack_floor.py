"""What serving costs before any DUIS work: the floor under the gateway's CPU outside its
stages, measured with the load client the gateway gets.

    python -m bench.stack_floor [--seconds S] [--connections K] [--server-core C]
                                [--client-core C] [--json]

The same closed loop as `bench.load` (bench/client.py: K keep-alive connections, one
request in flight each) drives `python -m bench.stack_floor_server` in each of its
modes, one at a time, pinned as the gateway is pinned: `bare` (trio and httptools),
`edge` (the gateway's connection edge) and `replay` (the edge and a durable replay
decision per request through the gateway's own guard). The request is a DUIS sample
request and the answer a DUIS sample response, so the bytes on the wire are a DUIS
exchange's; nothing is checked or signed. Each mode's figure is the server's CPU per
request (user and system, from /proc).

`bench.compare` sets the `replay` figure beside the stage floor: a gateway that did its
stages at their floor and nothing else but this would reach stages / (stages + this)
of the floor, the ceiling of the issue's first ratio on this runtime and machine.
Measured with the gateway's own reference, in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import trio

from bench import corpus as corpus_mod
from bench.client import closed_loop
from bench.corpus import Prepared
from bench.gateway_process import GatewayFailed, StackFloorProcess
from bench.ports import free_ports
from bench.stack_floor_server import MODES

REQUEST_TEMPLATE = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS"  # bench.hotpath's
ANSWER_SAMPLE = Path("duis/samples/responses/ECS52_11.2_SUCCESS_RESPONSE_DUIS.XML")
WARMUP_PER_CONNECTION = 50
# Requests queued per connection: more than a run of `seconds` can answer.
REQUESTS_PER_CONNECTION = 50_000


class ModeCost(msgspec.Struct, frozen=True):
    mode: str
    answered: int
    per_second: float
    server_us_per_request: float


class StackFloor(msgspec.Struct, frozen=True):
    connections: int
    seconds: float
    modes: list[ModeCost]

    def us(self, mode: str) -> float:
        return next((m.server_us_per_request for m in self.modes if m.mode == mode), 0.0)


def wire(body: bytes) -> bytes:
    head = (
        b"POST /api/5.4/stack-floor HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


def measure(
    seconds: float = 3.0,
    connections: int = 32,
    server_core: int = 0,
    client_core: int = 1,
    modes: tuple[str, ...] = MODES,
) -> StackFloor:
    shared = corpus_mod.find_shared()
    body = (shared / corpus_mod.SAMPLES / f"{REQUEST_TEMPLATE}.XML").read_bytes()
    prepared: Prepared = (wire(body), frozenset({"I0"}))
    costs = []
    with tempfile.TemporaryDirectory(prefix="bench-stack-floor-") as tmp:
        for mode in modes:
            directory = Path(tmp) / mode
            directory.mkdir()
            costs.append(
                _one_mode(
                    mode,
                    directory,
                    shared / ANSWER_SAMPLE,
                    prepared,
                    seconds,
                    connections,
                    server_core,
                    client_core,
                )
            )
    return StackFloor(connections, seconds, costs)


def _one_mode(
    mode: str,
    directory: Path,
    answer: Path,
    prepared: Prepared,
    seconds: float,
    connections: int,
    server_core: int,
    client_core: int,
) -> ModeCost:
    server = StackFloorProcess.start(
        directory,
        free_ports(),
        mode,
        answer,
        cores={server_core} if server_core >= 0 else None,
    )
    previous = os.sched_getaffinity(0)
    try:
        if client_core >= 0:
            os.sched_setaffinity(0, {client_core})
        address = ("127.0.0.1", server.port)
        warm = [[prepared] * WARMUP_PER_CONNECTION for _ in range(connections)]
        trio.run(closed_loop, address, warm, None, None)
        slots = [[prepared] * REQUESTS_PER_CONNECTION for _ in range(connections)]
        before = server.cpu_seconds()
        tally = trio.run(closed_loop, address, slots, None, seconds)
        spent = server.cpu_seconds() - before
    finally:
        os.sched_setaffinity(0, previous)
        server.stop()
    answered = len(tally.latencies)
    if tally.unexpected or tally.failures or not answered:
        raise GatewayFailed(
            f"stack floor server ({mode}): {answered} answered, {tally.unexpected} "
            f"unexpected, failures {dict(tally.failures)}:\n{server.log_tail()}"
        )
    return ModeCost(mode, answered, answered / tally.elapsed, spent / answered * 1e6)


def format_floor(floor: StackFloor) -> str:
    lines = [f"{floor.connections} connections, {floor.seconds:g} s per mode, closed loop"]
    for m in floor.modes:
        lines.append(
            f"  {m.mode:<7} {m.per_second:>9,.0f} requests/s  "
            f"{m.server_us_per_request:6.1f} us server CPU per request"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="length of each mode's run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--server-core", type=int, default=0, help="-1: do not pin the server")
    p.add_argument("--client-core", type=int, default=1, help="-1: do not pin the client")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    started = time.monotonic()
    floor = measure(args.seconds, args.connections, args.server_core, args.client_core)
    if args.json:
        sys.stdout.write(msgspec.json.encode(floor).decode() + "\n")
    else:
        print(format_floor(floor))
        print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
