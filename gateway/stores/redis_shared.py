"""The one Redis every node shares (`[state] backend = "redis"`): connection, key layout,
and what an acknowledged write waits for.

Every Redis-backed store takes a `SharedRedis` from the composition root and never opens
its own connection, so one deployment has one place that says single server, Sentinel or
Cluster, and one durability rule.

**Keys.** `keys.of(kind, tag, *rest)` gives `<prefix>:<kind>:{<tag>}:<rest...>`. The part
in braces is the Redis Cluster hash tag: every key built with the same tag (an originator's
EUI-64, a User ID, a partition number) lands on one slot, so one script may touch them
all atomically. A key without a tag (`keys.of(kind, None, ...)`) is for state that is read
alone (a listing index, a global sequence).

**Durability.** An acknowledgement is only sent after the write it depends on returns
from `durable(...)`: with `durability = "always"` the server was checked at start to run
`appendonly yes` + `appendfsync always`, so the primary has the write on disk before it
replies; with `"everysec"` the write is also on `wait_replicas` replicas (WAIT), each of
which fsyncs within a second: losing the write needs the primary and those replicas to
fail together within that second.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.connection import TCPLocation

from gateway.core.config import SharedRedisConfig

log = logging.getLogger("duisgw.redis")

# What a Redis call can raise when the server is down, slow or restarting, or when the
# connection is being closed under it (coredis's anyio streams, as a gateway stops).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    coredis.exceptions.RedisError,
    OSError,
    TimeoutError,
    trio.TooSlowError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)

_T = TypeVar("_T")


class SharedStoreUnavailable(Exception):
    """Redis could not be reached or did not confirm a write; nothing was acknowledged."""


class RedisDurabilityError(Exception):
    """The server's persistence settings do not give the configured guarantee."""


class Keys:
    """Key names under one prefix, with Redis Cluster hash tags."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def of(self, kind: str, tag: str | None, *rest: str | int) -> str:
        head = f"{self.prefix}:{kind}" if tag is None else f"{self.prefix}:{kind}:{{{tag}}}"
        return ":".join([head, *map(str, rest)]) if rest else head


class SharedRedis:
    """A client (single, Sentinel primary or Cluster) with the deployment's key layout."""

    def __init__(self, client: Any, settings: SharedRedisConfig) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.cluster = settings.mode == "cluster"

    async def durable(self, write: Awaitable[_T]) -> _T:
        """Await a write and, under "everysec", WAIT for its replicas; SharedStoreUnavailable
        if Redis fails or too few replicas confirm in time."""
        try:
            result = await write
            if self.settings.durability == "everysec":
                wanted = self.settings.wait_replicas
                with warnings.catch_warnings():
                    # coredis steers towards ensure_replication (a context variable around
                    # each command); one explicit WAIT after the write is what we mean.
                    warnings.simplefilter("ignore", UserWarning)
                    waiting = self.client.wait(wanted, self.settings.wait_timeout_ms)
                got = await waiting
                if got < wanted:
                    raise SharedStoreUnavailable(
                        f"only {got} of {wanted} replicas confirmed the write within "
                        f"{self.settings.wait_timeout_ms} ms"
                    )
        except REDIS_ERRORS as exc:
            raise SharedStoreUnavailable(f"Redis: {exc or type(exc).__name__}") from exc
        return result

    async def check_durability(self) -> str:
        """Refuse to start on a server that would not keep acknowledged writes; a line
        for the log saying what each acknowledgement waits for."""
        mode = self.settings.durability
        if mode == "unchecked":
            return "Redis persistence not checked (durability = unchecked)"
        try:
            every = await self._persistence_settings()
        except coredis.exceptions.ResponseError as exc:
            raise RedisDurabilityError(
                f"cannot read the server's persistence settings ({exc}); if CONFIG is "
                'disabled there, set [state.redis] durability = "unchecked"'
            ) from exc
        # Under Cluster every primary holds some keys: each must keep what it acknowledges.
        guarantees = {self._check_one(settings) for settings in every}
        return guarantees.pop() if len(guarantees) == 1 else "; ".join(sorted(guarantees))

    async def _persistence_settings(self) -> list[dict[str, str]]:
        wanted = ["appendonly", "appendfsync"]
        if not self.cluster:
            found = await self.client.config_get(wanted)
            return [{_text(k): _text(v) for k, v in dict(found).items()}]
        # CONFIG GET has no key, so the cluster client cannot route it: ask each primary.
        every = []
        for node in await self.client.cluster_nodes():
            if "master" not in node["flags"]:
                continue
            one = coredis.Redis(
                host=node["host"],
                port=node["port"],
                password=self.settings.password,
                connect_timeout=self.settings.connect_timeout_seconds,
                stream_timeout=self.settings.stream_timeout_seconds,
            )
            async with one:
                found = await one.config_get(wanted)
            every.append({_text(k): _text(v) for k, v in dict(found).items()})
        return every

    def _check_one(self, settings: dict[str, str]) -> str:
        mode = self.settings.durability
        if settings.get("appendonly") != "yes":
            raise RedisDurabilityError(
                "the Redis server runs without the append-only file (appendonly no): an "
                "acknowledged request would not survive its restart; set appendonly yes"
            )
        fsync = settings.get("appendfsync")
        if mode == "always" and fsync != "always":
            raise RedisDurabilityError(
                f"durability = always needs appendfsync always on the server (it has "
                f'{fsync}); or set durability = "everysec" with wait_replicas'
            )
        if mode == "everysec" and fsync not in ("always", "everysec"):
            raise RedisDurabilityError(
                f"durability = everysec needs appendfsync everysec ({fsync})"
            )
        if mode == "always":
            return "acknowledgements wait for Redis's fsync (appendfsync always)"
        return (
            f"acknowledgements wait for {self.settings.wait_replicas} replica(s) "
            f"(WAIT; appendfsync {fsync})"
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _split(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host, int(port)


@asynccontextmanager
async def _connected(settings: SharedRedisConfig) -> AsyncIterator[Any]:
    """The client for the deployment's mode, entered (its pools live for the block)."""
    connect, stream = settings.connect_timeout_seconds, settings.stream_timeout_seconds
    if settings.mode == "sentinel":
        # The Sentinel's own pools must be open before its primary client can ask them
        # where the primary is (at first use, and again after a failover).
        sentinel: Any = coredis.Sentinel(
            [TCPLocation(*_split(node)) for node in settings.sentinels],
            password=settings.password,
            connect_timeout=connect,
            stream_timeout=stream,
        )
        async with sentinel, sentinel.primary_for(settings.service_name) as primary:
            yield primary
        return
    if settings.mode == "cluster":
        client: Any = coredis.RedisCluster(
            startup_nodes=[TCPLocation(*_split(node)) for node in settings.cluster_nodes],
            password=settings.password,
            connect_timeout=connect,
            stream_timeout=stream,
        )
    else:
        client = coredis.Redis.from_url(
            settings.url, connect_timeout=connect, stream_timeout=stream
        )
    async with client:
        yield client


@asynccontextmanager
async def open_shared_redis(settings: SharedRedisConfig) -> AsyncIterator[SharedRedis]:
    """Connect, check persistence, yield; RedisDurabilityError or SharedStoreUnavailable
    (with the reason) when the gateway must not start on it."""
    try:
        async with _connected(settings) as client:
            shared = SharedRedis(client, settings)
            try:
                guarantee = await shared.check_durability()
            except REDIS_ERRORS as exc:
                raise SharedStoreUnavailable(
                    f"Redis ({settings.mode}) not reachable: {exc or type(exc).__name__}"
                ) from exc
            log.info("shared state on Redis (%s): %s", settings.mode, guarantee)
            yield shared
    except BaseExceptionGroup as group:
        # coredis's nursery wraps whatever the caller's block raised; give it back as it was.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
