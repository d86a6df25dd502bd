"""The server side of bench/stack_floor.py: a keep-alive HTTP server that does no DUIS work.

    python -m bench.stack_floor_server --port P --answer FILE --mode bare|edge|replay
                                       --state-dir DIR

Every request gets the same canned 200 answer (FILE's bytes, an acknowledgement's size).
What each mode keeps of the gateway:

- `bare`: trio and httptools only (read, parse, answer): the runtime's own cost;
- `edge`: the gateway's connection edge (gateway/edge/server.py's ConnectionHandler, with
  its slots, deadlines, idle parking and metrics) around a handler that answers at once;
- `replay`: the edge, and one replay decision per request through the gateway's own
  SQLite replay guard (gateway/stores/replay.py: group-committed, synchronous FULL, its
  file in DIR), each a new counter of one originator: the durable write every request
  waits for.

Nothing checks, builds or signs anything: what such a server costs per request is a
floor under the gateway's CPU outside its stages.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import httptools
import trio

from gateway.core.config import LimitsConfig
from gateway.edge.http import HttpRequest
from gateway.edge.metrics import Metrics
from gateway.edge.server import Answer, ConnectionHandler, Draining, PeerInfo
from gateway.stores.replay import SharedReplayGuard
from mmc.identifiers import RequestId

MODES = ("bare", "edge", "replay")
CONTENT_TYPE = b"application/xml"
RECEIVE_BYTES = 65_536
# A CommandVariant answered synchronously (no Pre-Command allowance to keep).
CV_SYNCHRONOUS = 8
ORIGINATOR = "90-B3-D5-1F-30-01-00-00"
TARGET = "00-DB-12-34-56-78-90-A4"


async def serve_bare(port: int, answer: bytes) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (CONTENT_TYPE, len(answer))
    ) + answer

    async def connection(stream: trio.SocketStream) -> None:
        complete: list[None] = []

        class Callbacks:
            def on_message_complete(self) -> None:
                complete.append(None)

        parser = httptools.HttpRequestParser(Callbacks())
        while data := await stream.receive_some(RECEIVE_BYTES):
            parser.feed_data(data)
            while complete:
                complete.pop()
                await stream.send_all(response)

    await trio.serve_tcp(connection, port, host="127.0.0.1")


async def serve_edge(port: int, answer: bytes, state_dir: Path | None) -> None:
    guard = None
    if state_dir is not None:
        guard = await SharedReplayGuard.open(state_dir / "replay.sqlite", synchronous="FULL")
    # One originator, its counter drawn in the order the requests reach the guard, which
    # decides them in that order: every one is new (committed, never refused).
    counter = itertools.count(1)

    async def handler(request: HttpRequest, peer: PeerInfo) -> Answer:
        if guard is not None:
            await guard.admit(RequestId(ORIGINATOR, TARGET, next(counter)), CV_SYNCHRONOUS)
        return (200, answer, CONTENT_TYPE)

    edge = ConnectionHandler(handler, LimitsConfig(), Metrics(), Draining(), listener="duis")
    try:
        await trio.serve_tcp(edge, port, host="127.0.0.1")
    finally:
        if guard is not None:
            with trio.CancelScope(shield=True):
                await guard.aclose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--answer", type=Path, required=True, help="the canned answer's body")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--state-dir", type=Path, required=True, help="replay mode: its file's place")
    args = p.parse_args(argv)
    answer = args.answer.read_bytes()
    if args.mode == "bare":
        trio.run(serve_bare, args.port, answer)
    elif args.mode == "edge":
        trio.run(serve_edge, args.port, answer, None)
    else:
        trio.run(serve_edge, args.port, answer, args.state_dir)


if __name__ == "__main__":
    main()
