"""Frames: a 4-byte big-endian body length, then a MessagePack body (docs/estate-link.md).

`encode` turns a message into one frame; `Deframer` turns a byte stream, fed in pieces
of any size, into messages. A partial frame waits for more bytes; a length above the
maximum, a body that does not decode, or a stream that ends inside a frame is a
`FrameError`, after which the deframer refuses everything (the connection is done).
"""

from __future__ import annotations

import msgspec

from gateway.core.estate_link.messages import ErrorCode, Message

LENGTH_BYTES = 4
# GBCS commands are at most a few kilobytes; a firmware image (CS11) is the largest thing
# a command carries, well under this.
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


class FrameError(Exception):
    """The peer sent something that is not a valid frame; the connection must close."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode(message: Message) -> bytes:
    """One frame: the length prefix and the body."""
    body = _encoder.encode(message)
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


class Deframer:
    """Bytes in, messages out; sans-IO. One per connection and direction."""

    __slots__ = ("_buffer", "_failed", "_max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self._failed: FrameError | None = None

    def feed(self, data: bytes | bytearray) -> list[Message]:
        """Every complete message `data` finishes, in order; FrameError on garbage."""
        if self._failed is not None:
            raise self._failed
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start = 0
        try:
            while len(buffer) - start >= LENGTH_BYTES:
                length = int.from_bytes(buffer[start : start + LENGTH_BYTES], "big")
                if length > self._max_frame_bytes:
                    raise FrameError(
                        ErrorCode.OVERSIZE,
                        f"frame of {length} bytes exceeds the maximum of {self._max_frame_bytes}",
                    )
                end = start + LENGTH_BYTES + length
                if len(buffer) < end:
                    break  # the rest of this frame has not arrived yet
                body = memoryview(buffer)[start + LENGTH_BYTES : end]
                try:
                    messages.append(_decoder.decode(body))
                except msgspec.DecodeError as exc:  # ValidationError is one
                    raise FrameError(ErrorCode.MALFORMED, f"undecodable message: {exc}") from None
                finally:
                    body.release()
                start = end
        except FrameError as exc:
            self._failed = exc
            buffer.clear()
            raise
        del buffer[:start]
        return messages

    def end_of_stream(self) -> None:
        """The peer closed; FrameError if it did so inside a frame."""
        if self._buffer and self._failed is None:
            self._failed = FrameError(
                ErrorCode.MALFORMED,
                f"connection closed inside a frame ({len(self._buffer)} bytes pending)",
            )
            raise self._failed

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)
