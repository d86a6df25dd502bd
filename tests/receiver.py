"""A User's Receive Response endpoint for tests: a real HTTP/1.1 server (h11 on trio)."""

from __future__ import annotations

from collections.abc import Callable

import h11
import msgspec
import trio


class Seen(msgspec.Struct, frozen=True):
    path: str
    message_id: str
    sequence: int
    attempt: int
    content_type: str
    body: bytes


class Receiver:
    """A User's Receive Response endpoint. `status_for` decides each answer."""

    def __init__(self, status_for: Callable[[Seen], int] = lambda seen: 200) -> None:
        self.status_for = status_for
        self.attempts: list[Seen] = []
        self.accepted: list[Seen] = []

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, stream)
                if request is None:
                    return
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                seen = Seen(
                    path=request.target.decode(),
                    message_id=headers["x-duis-message-id"],
                    sequence=int(headers["x-duis-sequence"]),
                    attempt=int(headers["x-duis-attempt"]),
                    content_type=headers["content-type"],
                    body=body,
                )
                status = self.status_for(seen)
                self.attempts.append(seen)
                if 200 <= status < 300:
                    self.accepted.append(seen)
                answer = b"not now" if status >= 300 else b""
                await stream.send_all(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[
                                ("content-length", str(len(answer))),
                                ("retry-after", "2"),
                            ],
                        )
                    )
                    + conn.send(h11.Data(data=answer))
                    + conn.send(h11.EndOfMessage())
                )
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.ProtocolError):
            return

    def accepted_ids(self, path: str) -> list[str]:
        return [s.message_id for s in self.accepted if s.path == path]


async def _read_request(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        else:  # ConnectionClosed: the client went away between requests
            return None, b""
