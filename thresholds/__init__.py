"""Anomaly Detection Thresholds per User ID: sans-IO engine plus its stores.

- `config`: the rules file (TOML → frozen Structs) and the Redis store settings.
- `windows`: sliding-window counters (exact timestamps; conservative buckets).
- `engine`: plans per (User ID, SRV) and `decide` — semantics documented there.
- `memory`: `MemoryThresholdStore`, the in-process default (sync).
- `redis`: `RedisThresholdStore`, counts shared by several processes (batched).
- `quarantine`: `QuarantineStore`, held requests durable in SQLite (WAL).

Submodules are imported explicitly so the sans-IO parts never pull in trio or coredis.
"""
