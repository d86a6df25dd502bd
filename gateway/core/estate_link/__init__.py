"""The estate link: how gateway nodes and estate services (a CSP adapter, the simulated
estate) talk. Sans-IO: message values, one encoder and one decoder, and a streaming
deframer; the sockets are gateway/edge/estate_link.py and gateway/devkit/estate_server.py.
The wire format is docs/estate-link.md.
"""

from gateway.core.estate_link.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    LENGTH_BYTES,
    Deframer,
    FrameError,
    encode,
)
from gateway.core.estate_link.messages import (
    PROTOCOL_VERSION,
    Alert,
    Command,
    Credit,
    Error,
    ErrorCode,
    Heartbeat,
    Hello,
    Message,
    Reply,
    command_from_device,
    device_command,
    device_reply,
    reply_from_device,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "LENGTH_BYTES",
    "PROTOCOL_VERSION",
    "Alert",
    "Command",
    "Credit",
    "Deframer",
    "Error",
    "ErrorCode",
    "FrameError",
    "Heartbeat",
    "Hello",
    "Message",
    "Reply",
    "command_from_device",
    "device_command",
    "device_reply",
    "encode",
    "reply_from_device",
]
