"""Anomaly Detection Thresholds per User ID: the sans-IO engine (a library).

- `config`: the rules file (TOML -> frozen Structs) and the Redis store settings.
- `windows`: sliding-window counters (exact timestamps; conservative buckets).
- `engine`: plans per (User ID, SRV) and `decide`; semantics documented there.
- `crossings`: when a warning is reported (once per crossing per window).
- `snapshot`: window counters as values, so saved counts come back after a restart.
- `rules_state`: which rules are in force at start (rules file or run-time rules).

The stores that count, keep and hold are gateway/stores/ (threshold_memory,
threshold_redis, threshold_sqlite, quarantine). Imports parse_correlate and mmc only.
"""

__all__ = ["config", "crossings", "engine", "rules_state", "snapshot", "windows"]
