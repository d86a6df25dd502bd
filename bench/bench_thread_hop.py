"""CPU per blocking call handed to a thread: trio.to_thread.run_sync against the stores'
WriterThread (gateway/stores/writer_thread.py), on one core as the gateway's worker runs.

    python -m bench.bench_thread_hop [--calls N] [--rounds R] [--core C] [--json]

Each round makes `calls` calls of an empty function one after another from one trio
task: what remains is the hop itself (queueing, waking the thread, the GIL handed over
and back, waking trio). to_thread is called with a CapacityLimiter of 1, as the group
commit called it. Best of `rounds` for each; the ratio is WriterThread over to_thread,
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_thread_hop")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="pin this process to one core")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and args.core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.core})
    to_thread = min(trio.run(_to_thread, args.calls) for _ in range(args.rounds))
    writer = min(trio.run(_writer_thread, args.calls) for _ in range(args.rounds))
    result = {"to_thread_us": to_thread, "writer_thread_us": writer, "ratio": writer / to_thread}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"CPU per call handed to a thread, one core, best of {args.rounds} x {args.calls}")
    print(f"trio.to_thread.run_sync (limiter of 1)  {to_thread:7.1f} µs")
    print(f"WriterThread.run_sync                   {writer:7.1f} µs   ratio {result['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
