"""One estate-link connection as messages: a trio stream, a send lock, a deframer.

Shared by both ends (gateway/edge/estate_link.py, gateway/devkit/estate_server.py).
Sending is serialised by a lock so frames never interleave; receiving yields decoded
messages and raises `FrameError` (after telling the peer with an Error frame) on
garbage, `LinkClosed` when the peer goes away, and `LinkSilent` after three
heartbeat intervals without a byte.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import trio

from gateway.core.estate_link import Deframer, Error, ErrorCode, FrameError, Message, encode

RECEIVE_BYTES = 65_536
SILENT_HEARTBEATS = 3  # intervals without a byte before the link is presumed dead


class LinkClosed(Exception):
    """The peer closed the connection or it broke."""


class LinkSilent(Exception):
    """Nothing arrived for SILENT_HEARTBEATS heartbeat intervals."""


class FramedStream:
    __slots__ = ("_deframer", "_heartbeat_seconds", "_lock", "closed", "peer", "stream")

    def __init__(
        self, stream: trio.abc.Stream, *, max_frame_bytes: int, heartbeat_seconds: float, peer: str
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.closed = False
        self._lock = trio.Lock()
        self._deframer = Deframer(max_frame_bytes)
        self._heartbeat_seconds = heartbeat_seconds

    async def send(self, message: Message) -> None:
        await self.send_frame(encode(message))

    async def send_frame(self, frame: bytes) -> None:
        """LinkClosed when the connection is gone (the frame may or may not have left)."""
        if self.closed:
            raise LinkClosed(f"link to {self.peer} is closed")
        try:
            async with self._lock:
                await self.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise LinkClosed(f"link to {self.peer}: {exc or type(exc).__name__}") from None

    async def messages(self) -> AsyncIterator[Message]:
        """Each message as it arrives. On a bad frame, an Error goes to the peer before
        FrameError is raised; the caller closes."""
        silent_after = self._heartbeat_seconds * SILENT_HEARTBEATS
        while True:
            data: bytes | bytearray = b""
            with trio.move_on_after(silent_after) as quiet:
                try:
                    data = await self.stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.closed = True
                    raise LinkClosed(f"link to {self.peer}: {exc or type(exc).__name__}") from None
            if quiet.cancelled_caught:
                raise LinkSilent(f"nothing from {self.peer} for {silent_after:g} s")
            try:
                if not data:
                    self._deframer.end_of_stream()
                    raise LinkClosed(f"{self.peer} closed the link")
                batch = self._deframer.feed(data)
            except FrameError as exc:
                await self.refuse(exc.code, exc.reason)
                raise
            for message in batch:
                yield message

    async def refuse(self, code: ErrorCode, reason: str) -> None:
        """Tell the peer why the link is closing (best effort, bounded)."""
        with trio.move_on_after(1.0):
            with contextlib.suppress(LinkClosed):
                await self.send(Error(code=code, reason=reason[:1000]))

    async def aclose(self) -> None:
        self.closed = True
        quiet = contextlib.suppress(trio.BrokenResourceError, OSError, ssl.SSLError)
        with trio.CancelScope(shield=True), trio.move_on_after(1.0), quiet:
            await self.stream.aclose()


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a session's nursery raised (reading or heartbeating), so callers can
    catch link errors by type; the group itself when there were several."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        error = stack.pop()
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else group
