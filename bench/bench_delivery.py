"""CPU per delivery POST: the gateway's client (gateway/edge/poster.py) against httpx.

    python -m bench.bench_delivery [--posts N] [--concurrency C ...] [--rounds R] [--json]

Both clients POST the same 3 KB signed-response-sized body, with delivery's headers, to
one `python -m bench.receiver` in its own process, so this process's CPU time is the
client's alone. httpx is set up as delivery had it (a pool of 64 kept-alive
connections); each concurrency runs `posts` POSTs from that many tasks, and each
figure is the best of `rounds` (the least disturbed). The ratio is the gateway's client
over httpx, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import httpx
import trio

from bench.gateway_process import ReceiverProcess
from bench.ports import free_ports
from gateway.edge.poster import Poster

BODY: Final = b"<sr:Response>" + b"x" * 3000 + b"</sr:Response>"
POOL: Final = 64  # delivery's max_concurrent_posts, the pool httpx had
MAX_ANSWER_BYTES: Final = 64 * 1024
HEAD_BYTES: Final = 200

Post = Callable[[int], Awaitable[int]]


def _headers(n: int) -> dict[str, str]:
    return {
        "Content-Type": "application/xml",
        "X-DUIS-Message-ID": f"bench-{n}",
        "X-DUIS-Sequence": str(n),
        "X-DUIS-Attempt": "1",
    }


async def _cpu_per_post(post: Post, posts: int, concurrency: int) -> float:
    """Process CPU µs per POST, `posts` of them from `concurrency` tasks."""
    for n in range(min(posts, 2 * concurrency)):  # warm: connections open
        await post(n)
    counter = iter(range(posts))

    async def worker() -> None:
        for n in counter:
            status = await post(n)
            if status != 200:
                raise RuntimeError(f"the receiver answered {status}")

    started = time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return (time.process_time() - started) / posts * 1e6


async def measure(url: str, posts: int, concurrencies: list[int], rounds: int) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for concurrency in concurrencies:
        figures: dict[str, float] = {}
        for _ in range(rounds):
            poster = Poster(max_idle=POOL)

            async def ours(n: int, poster: Poster = poster) -> int:
                answer = await poster.post(
                    url,
                    BODY,
                    _headers(n),
                    head_bytes=HEAD_BYTES,
                    max_answer_bytes=MAX_ANSWER_BYTES,
                )
                return answer.status

            limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
            async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

                async def theirs(n: int, client: httpx.AsyncClient = client) -> int:
                    async with client.stream("POST", url, content=BODY, headers=_headers(n)) as r:
                        await r.aread()
                        return r.status_code

                for name, post in (("httpx", theirs), ("poster", ours)):
                    us = await _cpu_per_post(post, posts, concurrency)
                    figures[name] = min(figures.get(name, us), us)
            await poster.aclose()
        rows.append(
            {
                "concurrency": concurrency,
                "httpx_us": figures["httpx"],
                "poster_us": figures["poster"],
                "ratio": figures["poster"] / figures["httpx"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_delivery")
    parser.add_argument("--posts", type=int, default=3000, help="POSTs per client per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        receiver = ReceiverProcess.start(Path(tmp), free_ports(1), cores=None)
        try:
            rows = trio.run(measure, receiver.url, args.posts, args.concurrency, args.rounds)
        finally:
            receiver.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"CPU per delivery POST (this process only), best of {args.rounds} x {args.posts}")
    print(f"{'concurrency':>11}  {'httpx µs':>9}  {'poster µs':>9}  {'poster/httpx':>12}")
    for row in rows:
        print(
            f"{row['concurrency']:>11}  {row['httpx_us']:>9.0f}  {row['poster_us']:>9.0f}"
            f"  {row['ratio']:>12.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
