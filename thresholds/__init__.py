"""Anomaly Detection Thresholds per User ID: sans-IO engine plus its stores.

- `config`: the rules file (TOML → frozen Structs) and the Redis store settings.
- `windows`: sliding-window counters (exact timestamps; conservative buckets).
- `engine`: plans per (User ID, SRV) and `decide` — semantics documented there.
- `crossings`: when a warning is reported (once per crossing per window).
- `memory`: `MemoryThresholdStore`, the in-process default (sync).
- `snapshot`: window counters as values, so saved counts come back after a restart.
- `rules_state`: which rules are in force at start (rules file or run-time rules).
- `state_store`: rules in force, their audit and saved counts, in SQLite.
- `redis`: `RedisThresholdStore`, counts shared by several processes (batched).
- `quarantine`: `QuarantineStore`, held requests durable in SQLite (WAL).

Submodules are imported explicitly so the sans-IO parts never pull in trio or coredis.
"""
