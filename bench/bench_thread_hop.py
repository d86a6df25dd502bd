"""CPU per blocking call handed to a thread: trio.to_thread.run_sync against the stores'
WriterThread (gateway/stores/writer_thread.py), on one core as the gateway's worker runs.

    python -m bench.bench_thread_hop [--calls N] [--rounds R] [--core C] [--gap-ms G]
                                     [--json]

Each round makes `calls` calls of an empty function one after another from one trio
task: what remains is the hop itself (queueing, waking the thread, the GIL handed over
and back, waking trio). to_thread is called with a CapacityLimiter of 1, as the group
commit called it. Best of `rounds` for each; the ratio is WriterThread over to_thread,
measured in the same run.

Then what the same hops cost when the loop has nothing else to do between requests,
as at a moderate rate: `calls` one-byte "requests" from another thread, `--gap-ms`
apart, each read from a socket and followed by two WriterThread hops (an asynchronous
request's replay decision and job journal each make one). Its CPU per request (the
process's, less the feeding thread's own) over the same with every request sent at
once (a request always waiting, as in a saturated gateway: the loop sleeps only while
a hop runs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time

import trio

from gateway.stores.writer_thread import WriterThread


def _nothing() -> int:
    return 0


async def _to_thread(calls: int) -> float:
    limiter = trio.CapacityLimiter(1)
    for _ in range(100):
        await trio.to_thread.run_sync(_nothing, limiter=limiter)
    started = time.process_time()
    for _ in range(calls):
        await trio.to_thread.run_sync(_nothing, limiter=limiter)
    return (time.process_time() - started) / calls * 1e6


async def _writer_thread(calls: int) -> float:
    writer = WriterThread("bench-hop")
    for _ in range(100):
        await writer.run_sync(_nothing)
    started = time.process_time()
    for _ in range(calls):
        await writer.run_sync(_nothing)
    result = (time.process_time() - started) / calls * 1e6
    writer.close()
    return result


HOPS_PER_REQUEST = 2


async def _requests_then_hops(calls: int, gap_seconds: float) -> float:
    """CPU µs per request: read it from a socket, then HOPS_PER_REQUEST hops."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sock = trio.socket.from_stdlib_socket(ours)
        writer = WriterThread("bench-hop")
        feeder_cpu = 0.0

        def feed() -> None:
            nonlocal feeder_cpu
            started = time.thread_time()
            for _ in range(calls):
                if gap_seconds:
                    time.sleep(gap_seconds)
                theirs.send(b"r")
            feeder_cpu = time.thread_time() - started

        feeder = threading.Thread(target=feed, name="bench-feeder")
        started = time.process_time()
        feeder.start()
        received = 0
        while received < calls:
            data = await sock.recv(65_536)
            received += len(data)
            for _ in range(len(data) * HOPS_PER_REQUEST):
                await writer.run_sync(_nothing)
        feeder.join()
        used = time.process_time() - started - feeder_cpu
        writer.close()
    return used / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_thread_hop")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="pin this process to one core")
    parser.add_argument(
        "--gap-ms", type=float, default=1.0, help="between requests, for the spaced figure"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and args.core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.core})
    to_thread = min(trio.run(_to_thread, args.calls) for _ in range(args.rounds))
    writer = min(trio.run(_writer_thread, args.calls) for _ in range(args.rounds))
    spaced_calls = max(1, min(args.calls, 2000))  # at --gap-ms each: a few seconds
    spaced = min(
        trio.run(_requests_then_hops, spaced_calls, args.gap_ms / 1000) for _ in range(args.rounds)
    )
    at_once = min(trio.run(_requests_then_hops, args.calls, 0.0) for _ in range(args.rounds))
    result = {
        "to_thread_us": to_thread,
        "writer_thread_us": writer,
        "ratio": writer / to_thread,
        "request_spaced_us": spaced,
        "request_at_once_us": at_once,
        "spaced_ratio": spaced / at_once,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"CPU per call handed to a thread, one core, best of {args.rounds} x {args.calls}")
    print(f"trio.to_thread.run_sync (limiter of 1)  {to_thread:7.1f} µs")
    print(f"WriterThread.run_sync                   {writer:7.1f} µs   ratio {result['ratio']:.2f}")
    print(
        f"a request read from a socket, then {HOPS_PER_REQUEST} WriterThread hops, "
        f"best of {args.rounds}"
    )
    print(f"  all sent at once ({args.calls}; one always waiting)    {at_once:7.1f} µs")
    print(
        f"  {args.gap_ms:g} ms apart ({spaced_calls}; idle between them)    {spaced:7.1f} µs"
        f"   ratio {result['spaced_ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
