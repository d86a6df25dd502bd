"""Asynchronous delivery: POST each stored response or alert to its User, in order.

A supervisor keeps one worker per User ID with pending messages (at most
`max_active_users` at once; others wait their turn in arrival order). A worker
sends its User's messages one at a time in `user_seq` order: the next is not
sent until the previous one was delivered (2xx) or dead-lettered. Connections
are bounded separately (`max_concurrent_posts`), so workers asleep in backoff
hold no socket. A worker hands its slot back after `max_messages_per_turn`
messages, so one busy User cannot starve the rest.

Retries: connect errors, timeouts, 408/425/429 and 5xx are retried with
exponential backoff and full jitter (`backoff_delay`), honouring a Retry-After
up to the cap. Other statuses (3xx: redirects are not followed, the URL is
configured; 4xx: the User refuses this message) dead-letter at once, as does
reaching `max_attempts`. A dead letter stays in the outbox for the operator,
and the worker moves on to the User's next message: we prefer delivering the
rest over blocking every later response behind one the User will not take.
The sequence number (X-DUIS-Sequence) lets the receiver see the gap. Each
message keeps its attempts across restarts, so max_attempts bounds the total.

Exactly once as far as the gateway can tell: a message marked delivered is
never sent again. The receiver gets at-least-once: if the process dies (or is
cancelled past its grace) between a 2xx and the commit of "delivered", the
message is sent again after restart with the same X-DUIS-Message-ID, which the
receiver uses to drop the duplicate.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections import deque
from contextlib import AsyncExitStack
from typing import Final, Literal

import msgspec
import trio

from gateway.core.config import DEV_INBOX_URL, DeliveryConfig
from gateway.core.log_fields import log_event
from gateway.edge.metrics import Metrics
from gateway.edge.poster import BadTarget, Poster, PostFailed
from gateway.stores.outbox import MAX_PURGE_ROWS
from gateway.stores.outbox_sqlite import OutboxStoreError, StoredMessage
from gateway.stores.outbox_store import OutboxStore

# Named, not __name__: the name operators filter on outlives a move of the module.
log = logging.getLogger("gateway.delivery")

MAX_RESPONSE_BYTES: Final = 64 * 1024  # of a receiver's answer body read; the rest dropped
MAX_ERROR_BODY_CHARS: Final = 200  # of a refusal's body kept in last_error
# Recording a 2xx is shielded from cancellation for this long, so a shutdown does not
# cause a re-send. The outbox fails the wait at once if its writer stops; the bound is
# for a writer stuck on the disk.
COMMIT_GRACE_SECONDS: Final = 30.0
STORE_RETRY_SECONDS: Final = 1.0  # a User's worker waits this long after the store failed

MESSAGE_ID_HEADER: Final = "X-DUIS-Message-ID"
SEQUENCE_HEADER: Final = "X-DUIS-Sequence"
ATTEMPT_HEADER: Final = "X-DUIS-Attempt"
RETRYABLE_4XX: Final = frozenset({408, 425, 429})

Outcome = Literal["delivered", "retry", "dead_letter"]


class DevInboxAddress(msgspec.Struct, frozen=True):
    """Where the gateway's delivery finds its own dev inbox, and the credential it sends."""

    base_url: str  # http://127.0.0.1:PORT, the admin listener as bound
    token: str

    @classmethod
    def for_listener(cls, bound: tuple[str, int], token: str) -> DevInboxAddress:
        host, port = bound
        # A wildcard bind is reached on loopback; the token never leaves the host.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return cls(f"http://{f'[{host}]' if ':' in host else host}:{port}", token)

    def url_for(self, user_id: str) -> str:
        return f"{self.base_url}/inbox/{user_id}"


# -- sans-IO decisions ------------------------------------------------------------------


def backoff_delay(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(failures - 1))].

    Jitter spreads the retries of many messages that failed together (one User's
    endpoint going down), so they do not return as one burst.
    """
    exponent = min(max(failures - 1, 0), 62)  # past this the cap has long won
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in RETRYABLE_4XX:
        return "retry"
    return "dead_letter"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After in delta-seconds. The HTTP-date form is ignored (plain backoff
    applies): it would tie our retry timing to the receiver's wall clock."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


# -- I/O ----------------------------------------------------------------------------------


class _Attempt(msgspec.Struct, frozen=True):
    outcome: Outcome
    error: str  # empty when delivered
    retry_after: float | None = None


async def run_delivery(
    outbox: OutboxStore,
    config: DeliveryConfig | None = None,
    *,
    poster: Poster | None = None,
    ssl_context: ssl.SSLContext | None = None,
    metrics: Metrics | None = None,
    rng: random.Random | None = None,
    dev_inbox: DevInboxAddress | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Deliver everything pending in `outbox`, and whatever arrives, until cancelled.

    The outbox's writer must run for as long as this does (start this inside
    `open_outbox`). `poster` overrides the HTTP client built here (gateway/edge/poster.py);
    `ssl_context` is for DCCKI mutual TLS (None: httpx's default trust, certifi's bundle).
    `dev_inbox` is where messages for the symbolic URL `dev-inbox` go (resolved at
    each attempt, so they follow the admin listener); None: they dead-letter.
    """
    config = config if config is not None else DeliveryConfig()
    if poster is None:
        poster = Poster(ssl_context=ssl_context, max_idle=config.max_concurrent_posts)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(poster.aclose)
        supervisor = _Supervisor(outbox, config, poster, metrics, rng or random.Random(), dev_inbox)
        with outbox.watch(supervisor.wake_user):
            for user_id in outbox.users_with_pending():  # restart: resume in arrival order
                supervisor.wake_user(user_id)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_purge_forever, outbox, config)
                task_status.started()
                await supervisor.supervise(nursery)


async def _purge_forever(outbox: OutboxStore, config: DeliveryConfig) -> None:
    while True:
        await trio.sleep(config.purge_interval_seconds)
        total = 0
        while True:  # in slices, so puts interleave with the delete
            try:
                removed = await outbox.purge_delivered(config.retention_seconds)
            except OutboxStoreError as exc:  # next interval, then
                log.warning("outbox: purge failed (%s)", exc)
                break
            total += removed
            if removed < MAX_PURGE_ROWS:
                break
        if total:
            log.info("outbox: purged %d delivered messages", total)


class _Supervisor:
    def __init__(
        self,
        outbox: OutboxStore,
        config: DeliveryConfig,
        poster: Poster,
        metrics: Metrics | None,
        rng: random.Random,
        dev_inbox: DevInboxAddress | None,
    ) -> None:
        self._outbox = outbox
        self._dev_inbox = dev_inbox
        self._config = config
        self._poster = poster
        self._metrics = metrics
        self._rng = rng
        self._posts = trio.CapacityLimiter(config.max_concurrent_posts)
        self._waiting: deque[str] = deque()  # Users with work and no worker, FIFO
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._wake = trio.Event()

    def wake_user(self, user_id: str) -> None:
        """Called on the trio thread when `user_id` has new work (from the outbox)."""
        # An active worker re-reads the outbox before it leaves, so it sees the work.
        if user_id not in self._active and user_id not in self._queued:
            self._waiting.append(user_id)
            self._queued.add(user_id)
            self._wake.set()

    async def supervise(self, nursery: trio.Nursery) -> None:
        while True:
            while self._waiting and len(self._active) < self._config.max_active_users:
                user_id = self._waiting.popleft()
                self._queued.discard(user_id)
                self._active.add(user_id)
                nursery.start_soon(self._serve_user, user_id)
            await self._wake.wait()
            self._wake = trio.Event()

    async def _serve_user(self, user_id: str) -> None:
        try:
            for _ in range(self._config.max_messages_per_turn):
                message = await self._outbox.next_pending(user_id)
                if message is None:
                    break
                await self._deliver(message)
        except OutboxStoreError as exc:  # Redis away: the work waits, the gateway stays up
            log.warning("outbox unavailable for user %s (%s); retrying", user_id, exc)
            await trio.sleep(STORE_RETRY_SECONDS)
        finally:
            # No await between the count and the re-queue: a put committing meanwhile
            # either is counted here or calls wake_user after we left _active.
            self._active.discard(user_id)
            if self._outbox.pending_count(user_id) > 0:
                self.wake_user(user_id)
            self._wake.set()  # a slot is free

    async def _deliver(self, message: StoredMessage) -> None:
        """Attempt until delivered or dead-lettered."""
        failures = message.attempts
        while True:
            async with self._posts:
                attempt = await _post(
                    self._poster,
                    message,
                    failures + 1,
                    self._config.request_timeout_seconds,
                    self._dev_inbox,
                )
            if attempt.outcome == "delivered":
                self._count("delivered")
                # The User has it: finish recording that even during shutdown.
                with trio.move_on_after(COMMIT_GRACE_SECONDS) as scope:
                    scope.shield = True
                    try:
                        await self._outbox.mark_delivered(message.message_id)
                    except OutboxStoreError as exc:  # the writer stopped with us
                        log_event(
                            log,
                            logging.WARNING,
                            "delivered, not recorded",
                            "outbox: %(message_id)s delivered, not recorded (%(reason)s): it "
                            "will be sent again after restart",
                            message_id=message.message_id,
                            reason=str(exc),
                        )
                return
            failures += 1
            if attempt.outcome == "dead_letter" or failures >= self._config.max_attempts:
                self._count("dead_letter")
                log_event(
                    log,
                    logging.WARNING,
                    "dead letter",
                    "outbox: dead letter %(message_id)s for user %(user_id)s after "
                    "%(attempts)d attempts: %(reason)s",
                    message_id=message.message_id,
                    user_id=message.user_id,
                    attempts=failures,
                    reason=attempt.error,
                )
                await self._outbox.dead_letter(message.message_id, attempt.error)
                return
            self._count("retry")
            await self._outbox.record_failure(message.message_id, attempt.error)
            await trio.sleep(self._delay(failures, attempt.retry_after))

    def _delay(self, failures: int, retry_after: float | None) -> float:
        cap = self._config.backoff_cap_seconds
        delay = backoff_delay(
            failures, base=self._config.backoff_base_seconds, cap=cap, rng=self._rng
        )
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        return delay

    def _count(self, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.deliveries.labels(outcome=outcome).inc()


async def _post(
    poster: Poster,
    message: StoredMessage,
    attempt: int,
    timeout_seconds: float,
    dev_inbox: DevInboxAddress | None,
) -> _Attempt:
    """One POST; the client's exceptions become outcomes here, at the boundary.

    The deadline around the whole attempt bounds how long a slow or hostile receiver
    (one trickling bytes, one never answering) can hold a connection slot.
    """
    headers = {
        "Content-Type": message.content_type,
        MESSAGE_ID_HEADER: message.message_id,
        SEQUENCE_HEADER: str(message.user_seq),
        ATTEMPT_HEADER: str(attempt),
    }
    url = message.url
    if url == DEV_INBOX_URL:
        if dev_inbox is None:
            return _Attempt("dead_letter", "response_url is dev-inbox but [dev_inbox] is off")
        url = dev_inbox.url_for(message.user_id)
        headers["Authorization"] = f"Bearer {dev_inbox.token}"
    try:
        with trio.fail_after(timeout_seconds):
            answer = await poster.post(
                url,
                message.body,
                headers,
                head_bytes=MAX_ERROR_BODY_CHARS,
                max_answer_bytes=MAX_RESPONSE_BYTES,
            )
    except trio.TooSlowError:
        return _Attempt("retry", f"no complete answer within {timeout_seconds:g} s")
    except BadTarget as exc:  # retrying cannot help
        return _Attempt("dead_letter", f"bad URL: {exc}")
    except PostFailed as exc:
        return _Attempt("retry", str(exc))
    outcome = classify_status(answer.status)
    if outcome == "delivered":
        return _Attempt("delivered", "")
    text = answer.head.decode("utf-8", "replace")
    return _Attempt(
        outcome,
        f"HTTP {answer.status}: {text}".rstrip(": "),
        retry_after_seconds(answer.retry_after),
    )
