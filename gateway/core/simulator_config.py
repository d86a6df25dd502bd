"""The embedded simulator's configuration: link profiles per HAN/WAN variant, hub queues.

Config values only (frozen Structs with their limits and defaults), so the gateway's
`Config` can hold them; the simulator that reads them is gateway/devkit/simulator.py,
the hub queues gateway/devkit/priority.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Per hub and class: a hub serving one command every few seconds drains 1000 in about an
# hour, which is as far ahead as queueing is still useful to a User.
MAX_QUEUED_PER_CLASS = 1000
# One User may hold three quarters of a class, so another User always finds room.
MAX_QUEUED_PER_USER_PER_CLASS = 750


class QueueLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_queued_per_class: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = MAX_QUEUED_PER_CLASS
    max_queued_per_user_per_class: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = (
        MAX_QUEUED_PER_USER_PER_CLASS
    )


Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

HAN_VARIANTS = ("Single Band", "Dual Band")  # 2.4 GHz; 2.4 GHz + 868 MHz (sub-GHz)
# DUIS sr:CSPRegion (5.3+) minus "Unknown" and "SMETS1": North is Arqiva's long-range
# radio, Central and South Telefonica's cellular (with mesh in the South); the 4G
# variants are the newer hubs of each region.
WAN_VARIANTS = ("North", "Central", "South", "4G North", "4G Central", "4G South")


class LinkProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One leg of the route: latency (lognormal from median and p99, or fixed at the
    median) and the chances a command finds the far end unreachable or silent."""

    distribution: Literal["lognormal", "fixed"] = "lognormal"
    latency_median_seconds: Seconds
    latency_p99_seconds: Seconds
    unreachable_rate: Rate = 0.0
    no_response_rate: Rate = 0.0

    def __post_init__(self) -> None:
        if self.latency_p99_seconds < self.latency_median_seconds:
            raise ValueError("latency_p99_seconds is below latency_median_seconds")
        if self.unreachable_rate + self.no_response_rate > 1.0:
            raise ValueError("unreachable_rate + no_response_rate exceeds 1")


def _link(median: float, p99: float, unreachable: float, silent: float) -> LinkProfile:
    return LinkProfile(
        latency_median_seconds=median,
        latency_p99_seconds=p99,
        unreachable_rate=unreachable,
        no_response_rate=silent,
    )


def default_wan_profiles() -> dict[str, LinkProfile]:
    """Illustrative, not measured: long-range radio slower than cellular, 4G fastest."""
    g4 = _link(1.0, 5.0, 0.002, 0.002)
    return {
        "North": _link(4.0, 20.0, 0.005, 0.005),
        "Central": _link(2.5, 15.0, 0.005, 0.005),
        "South": _link(3.0, 18.0, 0.01, 0.005),
        "4G North": g4,
        "4G Central": g4,
        "4G South": g4,
    }


def default_han_profiles() -> dict[str, LinkProfile]:
    """Illustrative: the 868 MHz band's duty-cycle limits make Dual Band hubs slower."""
    return {
        "Single Band": _link(0.3, 1.5, 0.002, 0.002),
        "Dual Band": _link(0.5, 3.0, 0.002, 0.003),
    }


class SimulatorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    wan_profiles: dict[str, LinkProfile] = msgspec.field(default_factory=default_wan_profiles)
    han_profiles: dict[str, LinkProfile] = msgspec.field(default_factory=default_han_profiles)
    # For hubs whose inventory entry names no variant, or one the tables lack.
    fallback_wan_variant: str = "Central"
    fallback_han_variant: str = "Single Band"
    response_timeout_seconds: Seconds = 30.0  # a silent device holds its hub this long
    queue_timeout_seconds: Seconds = 600.0  # longest wait for the hub, then E21
    future_dated_timeout_seconds: Seconds = 3600.0  # start this late at most, then E30
    hub_capacity: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    queue_limits: QueueLimits = QueueLimits()
    device_alert_rate: Rate = 0.0  # chance a reply carries a device alert
    device_alert_code: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)] = 0x8145  # clock adjusted
    firmware_version_hex: Annotated[str, msgspec.Meta(pattern=r"^([0-9A-Fa-f]{2}){1,64}$")] = (
        "53494D31"  # "SIM1"
    )

    def __post_init__(self) -> None:
        if self.fallback_wan_variant not in self.wan_profiles:
            raise ValueError(f"fallback_wan_variant {self.fallback_wan_variant!r} has no profile")
        if self.fallback_han_variant not in self.han_profiles:
            raise ValueError(f"fallback_han_variant {self.fallback_han_variant!r} has no profile")
