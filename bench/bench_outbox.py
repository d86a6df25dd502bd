"""Durable puts per second: group commit against one commit (one fsync) per put.

    python -m bench.bench_outbox [--messages N] [--producers P] [--body-bytes B] [--json]

`producers` tasks put `messages` in total, as concurrent requests would before
their I99; every put returns only once its batch is committed with
synchronous=FULL. The same store runs three ways: group commit with concurrent
producers (the gateway's case), one commit per put with the same producers, and
one producer alone (nothing to group: the latency floor). The file lives in a
temporary directory beside the working directory's disk unless --dir says
otherwise, since fsync cost is the point (tmpfs would hide it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Final

import trio

from gateway.stores.outbox import MAX_BATCH_OPS, OutboundMessage, Outbox

USERS: Final = 16  # User IDs the messages are spread over
URL: Final = "https://user.example/receive-response"


async def _put_all(
    path: Path, *, messages: int, producers: int, max_batch: int, body: bytes
) -> float:
    """Seconds to put `messages` from `producers` tasks, each put awaited to commit."""
    outbox = await Outbox.open(path, max_batch=max_batch)
    created = dt.datetime.now(dt.UTC)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(outbox.run)

            async def producer(first: int) -> None:
                for n in range(first, messages, producers):
                    await outbox.put(
                        OutboundMessage(
                            message_id=f"{path.stem}-{n}",
                            user_id=f"U{n % USERS}",
                            url=URL,
                            body=body,
                            created_at=created,
                        )
                    )

            started = time.perf_counter()
            async with trio.open_nursery() as producers_nursery:
                for first in range(producers):
                    producers_nursery.start_soon(producer, first)
            elapsed = time.perf_counter() - started
            assert outbox.pending_count() == messages
            nursery.cancel_scope.cancel()
    finally:
        outbox.close()
    return elapsed


def run(messages: int, producers: int, body_bytes: int, directory: str | None) -> dict[str, float]:
    body = (b"<sr:Response>" + b"x" * body_bytes)[:body_bytes]
    cases = {
        "group_commit": (producers, MAX_BATCH_OPS),
        "commit_per_put": (producers, 1),
        "single_producer": (1, MAX_BATCH_OPS),
    }
    result: dict[str, float] = {
        "messages": messages,
        "producers": producers,
        "body_bytes": body_bytes,
    }
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for name, (case_producers, max_batch) in cases.items():
            put_all = functools.partial(
                _put_all,
                Path(tmp) / f"{name}.db",
                messages=messages,
                producers=case_producers,
                max_batch=max_batch,
                body=body,
            )
            seconds = trio.run(put_all)
            result[f"{name}_per_second"] = messages / seconds
    result["group_commit_speedup"] = (
        result["group_commit_per_second"] / result["commit_per_put_per_second"]
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000, help="puts per case")
    parser.add_argument("--producers", type=int, default=64, help="concurrent putting tasks")
    parser.add_argument("--body-bytes", type=int, default=2048, help="signed response size")
    parser.add_argument("--dir", default=".", help="where the database files go")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.messages, args.producers, args.body_bytes, args.dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.messages} puts of {args.body_bytes} bytes, synchronous=FULL, "
        f"{args.producers} producers unless noted"
    )
    print(f"group commit     : {result['group_commit_per_second']:9.0f} puts/s")
    print(f"commit per put   : {result['commit_per_put_per_second']:9.0f} puts/s")
    print(f"single producer  : {result['single_producer_per_second']:9.0f} puts/s (1 producer)")
    print(f"group commit speedup: {result['group_commit_speedup']:.1f}x")


if __name__ == "__main__":
    main()
