"""The hostile crowd of `python -m bench.soak`: one process of clients a gateway must outlast.

Each kind is a set of trio tasks that repeat their abuse until told to stop, from
several loopback source addresses (127.0.0.2, .3, ...: Linux routes all of 127/8
to lo) so the per-peer cap limits each peer, not the crowd as a whole:

- idle: connect and never send; when closed (reclaimed, idle timeout), come back;
- slow_head / slow_body: a request one byte every `slow_interval_seconds`;
- huge_head: a header value that never ends (up to 50 MB), as fast as it is read;
- non_reader: hundreds of pipelined requests, answers never read;
- fuzz: mutated signed requests (bytes flipped, cut, swapped), at a steady rate;
- admin: probes of the admin API that once ended the process, and other junk.

It runs in its own process (`run_crowd`) so its CPU does not delay the well-behaved
client's timing, and reports what each kind saw (status lines, silent closes, errors).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing.synchronize
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.queues import Queue

import msgspec
import trio

RECEIVE_BYTES = 65_536
ANSWER_TIMEOUT_SECONDS = 60.0  # longer than any limit the gateway applies by default
RECONNECT_DELAY_SECONDS = (1.0, 3.0)  # jittered, so reclaimed sockets do not spin
HUGE_HEAD_BYTES = 50_000_000
NON_READER_REQUESTS = 2_000
NON_READER_RECEIVE_BUFFER_BYTES = 4096
HOLD_UNANSWERED_SECONDS = 60.0  # a non-reader gives up (and says so) after this
ADMIN_PROBES = (
    b"GET /admin/quarantine/99999999999999999999999",
    b"GET /admin/quarantine?min_age_seconds=1e999",
    b"GET /admin/quarantine?min_age_seconds=1e300",
    b"POST /admin/quarantine/99999999999999999999999/release",
    b"POST /admin/quarantine/-99999999999999999999999/delete",
    b"GET /admin/quarantine?min_age_seconds=nan",
    b"GET /admin/quarantine/abc",
    b"GET /admin/quarantine?state=bogus",
    b"POST /admin/outbox/dead-letters/%00/retry",
    b"GET /admin/outbox/pending?user_id=" + b"x" * 2000,
    b"GET /nowhere",
)


class CrowdOptions(msgspec.Struct, frozen=True, kw_only=True):
    duis_port: int
    admin_port: int
    peers: int = 8
    idle: int = 1100
    slow_heads: int = 64
    slow_bodies: int = 64
    slow_interval_seconds: float = 3.0
    huge_heads: int = 4
    non_readers: int = 16
    fuzz_per_second: float = 10.0
    admin_probes_per_second: float = 2.0
    fuzz_bases: tuple[bytes, ...] = ()  # signed HTTP requests to mutate
    seed: int = 11


class KindReport(msgspec.Struct):
    attempts: int = 0
    outcomes: dict[str, int] = {}  # "HTTP 408", "closed silently", "send refused", ...


def run_crowd(
    options: CrowdOptions, stop: multiprocessing.synchronize.Event, results: Queue[bytes]
) -> None:
    """The child process's entry point: abuse until `stop`, then put the report (JSON)."""
    report = trio.run(_crowd, options, stop)
    results.put(msgspec.json.encode(report))


async def _crowd(
    options: CrowdOptions, stop: multiprocessing.synchronize.Event
) -> dict[str, KindReport]:
    tallies: dict[str, Counter[str]] = {}
    attempts: Counter[str] = Counter()
    sources = itertools.cycle([f"127.0.0.{2 + i}" for i in range(options.peers)])
    rng = random.Random(options.seed)

    def record(kind: str, outcome: str) -> None:
        tallies.setdefault(kind, Counter())[outcome] += 1

    async def repeat(kind: str, once: Callable[[str], Awaitable[str]], pause: bool) -> None:
        source = next(sources)
        while True:
            attempts[kind] += 1
            try:
                outcome = await once(source)
            except OSError as exc:  # could not connect at all
                outcome = f"connect failed: {type(exc).__name__}"
            record(kind, outcome)
            if pause:
                await trio.sleep(rng.uniform(*RECONNECT_DELAY_SECONDS))

    duis = options.duis_port
    kinds: list[tuple[str, int, Callable[[str], Awaitable[str]], bool]] = [
        ("idle", options.idle, lambda s: _idle(duis, s), True),
        ("slow_head", options.slow_heads, lambda s: _slow(duis, s, options, body=False), False),
        ("slow_body", options.slow_bodies, lambda s: _slow(duis, s, options, body=True), False),
        ("huge_head", options.huge_heads, lambda s: _huge_head(duis, s), True),
        ("non_reader", options.non_readers, lambda s: _non_reader(duis, s), True),
    ]
    async with trio.open_nursery() as nursery:
        for kind, count, once, pause in kinds:
            for _ in range(count):
                nursery.start_soon(repeat, kind, once, pause)
        if options.fuzz_bases and options.fuzz_per_second > 0:
            nursery.start_soon(_fuzz, options, rng, record, attempts)
        if options.admin_probes_per_second > 0:
            nursery.start_soon(_admin, options, record, attempts)
        await trio.to_thread.run_sync(stop.wait)  # set by the soak's process
        nursery.cancel_scope.cancel()
    return {
        kind: KindReport(attempts=attempts[kind], outcomes=dict(tallies.get(kind, {})))
        for kind in sorted(attempts)
    }


# ------------------------------------------------------------------ one abuse each


async def _connect(port: int, source: str, receive_buffer: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket()
    try:
        if receive_buffer is not None:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    """What the gateway said before closing (its first line is enough to judge)."""
    data = b""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while chunk := await stream.receive_some(RECEIVE_BYTES):
            if len(data) < 4096:
                data += chunk
    return data


def _status(data: bytes) -> str:
    if not data:
        return "closed silently"
    return "HTTP " + data[9:12].decode("ascii", "replace") if data[:5] == b"HTTP/" else "junk"


async def _send_quietly(stream: trio.SocketStream, data: bytes) -> bool:
    """False once the gateway has closed the connection."""
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def _read_response(stream: trio.SocketStream) -> bytes:
    """One response (the gateway always sends content-length); b"" if closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(RECEIVE_BYTES)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = await stream.receive_some(RECEIVE_BYTES)
        if not chunk:
            break
        body += chunk
    return head


async def _answer_then_close(stream: trio.SocketStream, send: Callable[[], Awaitable[None]]) -> str:
    """Run `send` beside reading; the outcome is what came back before the close."""
    async with stream:
        answer = b""
        with trio.move_on_after(ANSWER_TIMEOUT_SECONDS) as waited:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                answer = await _read_until_closed(stream)
                nursery.cancel_scope.cancel()
        return "no answer within 60 s" if waited.cancelled_caught else _status(answer)


async def _idle(port: int, source: str) -> str:
    async with await _connect(port, source) as stream:
        return _status(await _read_until_closed(stream))


async def _slow(port: int, source: str, options: CrowdOptions, *, body: bool) -> str:
    if body:
        wire = b"POST /api/v1/serviceS HTTP/1.1\r\nHost: soak\r\nContent-Type: application/xml\r\n"
        head, trickle = wire + b"Content-Length: 100000\r\n\r\n", b"<" * 100_000
    else:
        head, trickle = b"", b"POST /api/v1/serviceS HTTP/1.1\r\nX-Slow: " + b"a" * 4000

    async def send() -> None:
        if not await _send_quietly(stream, head):
            return
        for i in range(len(trickle)):
            if not await _send_quietly(stream, trickle[i : i + 1]):
                return
            await trio.sleep(options.slow_interval_seconds)

    stream = await _connect(port, source)
    return await _answer_then_close(stream, send)


async def _huge_head(port: int, source: str) -> str:
    chunk = b"a" * RECEIVE_BYTES

    async def send() -> None:
        if not await _send_quietly(stream, b"GET /api/v1/serviceS HTTP/1.1\r\nX-Huge: "):
            return
        for _ in range(HUGE_HEAD_BYTES // len(chunk)):
            if not await _send_quietly(stream, chunk):
                return  # the gateway has closed; its answer is being read

    stream = await _connect(port, source)
    return await _answer_then_close(stream, send)


async def _non_reader(port: int, source: str) -> str:
    """Pipeline requests, never read, and see how long until the gateway gives up on us."""
    request = b"GET /api/v1/serviceS HTTP/1.1\r\nHost: soak\r\n\r\n"
    async with await _connect(port, source, NON_READER_RECEIVE_BUFFER_BYTES) as stream:
        with trio.move_on_after(HOLD_UNANSWERED_SECONDS):
            try:
                await stream.send_all(request * NON_READER_REQUESTS)
                while True:  # a send fails once the gateway has closed the connection
                    await trio.sleep(1.0)
                    await stream.send_all(request)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "closed by the gateway"
        return "still open after 60 s"


def _mutations(rng: random.Random, wire: bytes) -> Iterator[bytes]:
    head, _, body = wire.partition(b"\r\n\r\n")
    head = head.split(b"\r\ncontent-length:")[0]
    while True:
        choice = rng.randrange(5)
        if choice == 0:  # flip bytes
            mutated = bytearray(body)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            new = bytes(mutated)
        elif choice == 1:  # cut short
            new = body[: rng.randrange(len(body))]
        elif choice == 2:  # swap two slices
            i, j = sorted(rng.sample(range(len(body)), 2))
            new = body[j:] + body[i:j] + body[:i]
        elif choice == 3:  # nesting and entities
            new = b"<!DOCTYPE a [<!ENTITY x 'y'>]>" + b"<a>" * 5000 + b"&x;" + b"</a>" * 5000
        else:  # valid XML, wrong everything
            new = body.replace(b"sr:Request", b"sr:Response", 1)
        yield head + b"\r\ncontent-length: %d\r\n\r\n" % len(new) + new


async def _fuzz(
    options: CrowdOptions,
    rng: random.Random,
    record: Callable[[str, str], None],
    attempts: Counter[str],
) -> None:
    """Mutated signed requests on a keep-alive connection, at a steady rate."""
    bases = [_mutations(rng, wire) for wire in options.fuzz_bases]
    stream: trio.SocketStream | None = None
    interval = 1.0 / options.fuzz_per_second
    next_due = trio.current_time()
    while True:
        attempts["fuzz"] += 1
        try:
            if stream is None:
                stream = await _connect(options.duis_port, "127.0.0.1")
            await stream.send_all(next(rng.choice(bases)))
            head = b""
            with trio.move_on_after(ANSWER_TIMEOUT_SECONDS):
                head = await _read_response(stream)
            record("fuzz", _status(head) if head else "no answer")
            if not head or b"connection: close" in head.lower():
                raise trio.ClosedResourceError
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            if stream is not None:
                await trio.aclose_forcefully(stream)
            stream = None
        next_due += interval
        await trio.sleep_until(next_due)


async def _admin(
    options: CrowdOptions, record: Callable[[str, str], None], attempts: Counter[str]
) -> None:
    interval = 1.0 / options.admin_probes_per_second
    for probe in itertools.cycle(ADMIN_PROBES):
        attempts["admin"] += 1
        try:
            stream = await _connect(options.admin_port, "127.0.0.1")
        except OSError as exc:
            record("admin", f"connect failed: {type(exc).__name__}")
        else:
            request = probe + b" HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"

            async def send(stream: trio.SocketStream = stream, request: bytes = request) -> None:
                await _send_quietly(stream, request)

            record("admin", await _answer_then_close(stream, send))
        await trio.sleep(interval)
