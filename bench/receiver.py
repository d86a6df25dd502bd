"""A User's Receive Response endpoint: the tests' receiver and the bench's, out of process.

    python -m bench.receiver --port P

A real HTTP/1.1 server on trio, parsing with the gateway's own httptools seam
(gateway/edge/http.py): the bench runs it in its own process so the gateway's CPU
figures leave out the Users' side of delivery. It answers 200 to every delivery POST
and counts them; `GET /stats` answers the counts as JSON, which bench.load reads
after the gateway has stopped. Tests run `Receiver` in their own trio loop, with
`status_for` deciding each answer and every attempt recorded.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Callable

import msgspec
import trio

from gateway.edge.http import HttpProtocolError, HttpRequest, RequestParser, render_response

MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any DUIS response the gateway delivers
MAX_HEADER_BYTES = 64 * 1024
RECEIVE_BYTES = 65536
STATS_PATH = "/stats"


class Seen(msgspec.Struct, frozen=True):
    path: str
    message_id: str
    sequence: int
    attempt: int
    content_type: str
    body: bytes


class Stats(msgspec.Struct):
    """What `GET /stats` answers: deliveries taken (2xx), attempts, distinct messages."""

    delivered: int = 0
    attempts: int = 0
    distinct_messages: int = 0
    malformed: int = 0  # requests refused as broken HTTP or missing the delivery headers


class Receiver:
    """A User's Receive Response endpoint. `status_for` decides each answer.

    `record=False` keeps counts and message IDs only (the bench's long runs would
    otherwise hold every body)."""

    def __init__(
        self, status_for: Callable[[Seen], int] = lambda seen: 200, *, record: bool = True
    ) -> None:
        self.status_for = status_for
        self.record = record
        self.attempts: list[Seen] = []
        self.accepted: list[Seen] = []
        self.stats = Stats()
        self._message_ids: set[str] = set()

    async def serve(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        parser = RequestParser(MAX_BODY_BYTES, MAX_HEADER_BYTES)
        try:
            while True:
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    return
                try:
                    requests = parser.feed(data)
                except HttpProtocolError as exc:
                    self.stats.malformed += 1
                    for request in exc.completed:
                        await stream.send_all(self._answer(request))
                    await stream.send_all(
                        render_response(exc.status, exc.reason.encode(), keep_alive=False)
                    )
                    return
                for request in requests:
                    await stream.send_all(self._answer(request))
                    if not request.keep_alive:
                        return
        except trio.BrokenResourceError:
            return  # the gateway went away mid-answer: its retry covers it
        finally:
            parser.close()

    def _answer(self, request: HttpRequest) -> bytes:
        if request.method == "GET" and request.target == STATS_PATH:
            body = msgspec.json.encode(self.stats)
            return render_response(
                200, body, content_type=b"application/json", keep_alive=request.keep_alive
            )
        seen = _seen(request)
        if seen is None:
            self.stats.malformed += 1
            return render_response(
                400, b"not a delivery", content_type=b"text/plain", keep_alive=request.keep_alive
            )
        status = self.status_for(seen)
        self.stats.attempts += 1
        if self.record:
            self.attempts.append(seen)
        if 200 <= status < 300:
            self.stats.delivered += 1
            if seen.message_id not in self._message_ids:
                self._message_ids.add(seen.message_id)
                self.stats.distinct_messages += 1
            if self.record:
                self.accepted.append(seen)
        return render_response(
            status,
            b"not now" if status >= 300 else b"",
            content_type=b"text/plain",
            keep_alive=request.keep_alive,
            extra_headers=((b"retry-after", b"2"),),
        )

    def accepted_ids(self, path: str) -> list[str]:
        return [s.message_id for s in self.accepted if s.path == path]


def _seen(request: HttpRequest) -> Seen | None:
    """The delivery a POST carries, or None if it lacks the gateway's headers."""
    message_id = request.header(b"x-duis-message-id")
    sequence = request.header(b"x-duis-sequence")
    attempt = request.header(b"x-duis-attempt")
    if request.method != "POST" or message_id is None or sequence is None or attempt is None:
        return None
    if not (sequence.isdigit() and attempt.isdigit()):
        return None
    return Seen(
        path=request.target,
        message_id=message_id.decode("utf-8", "replace"),
        sequence=int(sequence),
        attempt=int(attempt),
        content_type=(request.header(b"content-type") or b"").decode("latin-1"),
        body=request.body,
    )


async def serve_until_signalled(receiver: Receiver, port: int, host: str) -> None:
    """Serve until SIGTERM or SIGINT, then print the counts (the bench's log keeps them)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(functools.partial(receiver.serve, port, host=host))
            print(f"bench.receiver listening on {host}:{bound}", file=sys.stderr, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    print(msgspec.json.encode(receiver.stats).decode(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.receiver", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    trio.run(serve_until_signalled, Receiver(record=False), args.port, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
