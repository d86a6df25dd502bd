"""Threshold configuration: TOML decoded straight into frozen msgspec Structs.

A rules file looks like this (every key is checked; unknown keys are refused)::

    bucket_count = 120          # buckets per window for approximate counters
    exact_limit_max = 2048      # counters up to this limit keep exact timestamps

    [[rules]]                   # DCC-set: 1000 requests an hour in total, any User ID
    user_id = "*"
    srv = "*"
    window_seconds = 3600
    limit = 1000
    kind = "dcc_quarantine"

    [[rules]]                   # this User ID's own warning on 1.1.1, per minute
    user_id = "90-B3-D5-1F-30-01-00-00"
    srv = "1.1.1"
    window_seconds = 60
    limit = 50
    kind = "warning"

    [[attribute_limits]]        # every tariff price a 1.1.1 request carries
    user_id = "*"
    srv = "1.1.1"
    attribute = "price"
    min = 0
    max = 10000

Attribute names are those the request decoder reads (mmc/limited_attributes.py);
any other name is refused, listing the known ones.

Thresholds are per User ID (SEC consultation §3.7 ¶134), never per party: a rule
with `user_id = "*"` applies to *each* User ID separately, it is not a shared pool.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mmc.limited_attributes import ATTRIBUTE_NAMES

# Canonical DUIS form only (upper-case hex pairs), so rules and request User IDs
# compare as plain strings on the hot path; "*" means each User ID separately.
UserIdKey = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$|^\*$")]
# "4.1.1", "2.2", or "*" for the total over every SRV.
SrvKey = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,2}(\.[0-9]{1,2}){1,2}$|^\*$")]
# Up to a week: longer windows would make exact counters and Redis TTLs silly.
WindowSeconds = Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

ThresholdKind = Literal["warning", "user_quarantine", "dcc_quarantine"]
Breach = Literal["ADUserThresholdBreach", "ADDCCThresholdBreach", "ADAttributeLimitsBreach"]

ANY = "*"
DEFAULT_BUCKET_COUNT = 120
DEFAULT_EXACT_LIMIT_MAX = 2048


class Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ThresholdRule(Base, frozen=True, kw_only=True):
    """At most `limit` processed requests per `window_seconds` for one User ID.

    The request that would make the count exceed `limit` is the first one held
    (or warned about): a count *at* the limit is still fine.
    """

    user_id: UserIdKey
    srv: SrvKey = ANY
    window_seconds: WindowSeconds
    limit: Limit
    kind: ThresholdKind


class AttributeLimit(Base, frozen=True, kw_only=True):
    """Inclusive bounds on a data value of a request (e.g. a top-up amount)."""

    user_id: UserIdKey = ANY
    srv: SrvKey
    attribute: AttributeName
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.attribute not in ATTRIBUTE_NAMES:
            known = ", ".join(sorted(ATTRIBUTE_NAMES))
            raise ValueError(f"unknown attribute {self.attribute!r}; known attributes: {known}")
        if self.min is None and self.max is None:
            raise ValueError(f"attribute limit on {self.attribute!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"attribute limit on {self.attribute!r}: min > max")


class ThresholdConfig(Base, frozen=True, kw_only=True):
    rules: tuple[ThresholdRule, ...] = ()
    attribute_limits: tuple[AttributeLimit, ...] = ()
    # Resolution of approximate counters: a window of W seconds is counted in
    # buckets of W / bucket_count seconds (see engine.BucketWindow).
    bucket_count: Annotated[int, msgspec.Meta(ge=10, le=3600)] = DEFAULT_BUCKET_COUNT
    # Counters whose largest limit is at most this keep exact timestamps in memory
    # (up to this many floats per counter); larger limits use buckets.
    exact_limit_max: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = DEFAULT_EXACT_LIMIT_MAX

    def __post_init__(self) -> None:
        seen: set[tuple[str, str, int, str]] = set()
        for rule in self.rules:
            key = (rule.user_id, rule.srv, rule.window_seconds, rule.kind)
            if key in seen:
                raise ValueError(f"duplicate threshold rule {key}")
            seen.add(key)


class RedisStoreSettings(Base, frozen=True, kw_only=True):
    """How one gateway process shares its counts with the others through Redis."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "duisgw:ad:"
    # Overshoot bound: limit + (processes - 1) * batch_size (see gateway/stores/threshold_redis.py).
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    flush_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.25
    # How long a counter's view stays exact without a read (see gateway/stores/threshold_redis.py);
    # a counter idle for longer is read again before its next decision.
    view_horizon_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    stream_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0

    def __post_init__(self) -> None:
        if self.view_horizon_seconds < 2 * self.flush_interval_seconds:
            # Otherwise busy counters would go cold between periodic flushes.
            raise ValueError("view_horizon_seconds must be at least 2 * flush_interval_seconds")


class ThresholdConfigError(Exception):
    """The rules file is unusable; the message names the key."""


def decode_threshold_config(raw: bytes | str) -> ThresholdConfig:
    try:
        return msgspec.toml.decode(raw, type=ThresholdConfig)
    except msgspec.ValidationError as exc:
        raise ThresholdConfigError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ThresholdConfigError(f"not valid TOML: {exc}") from None
