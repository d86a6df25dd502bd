"""The stores: everything durable, behind the protocols the edge uses.

Imports the core and the libraries below it, never the edge or the dev kit.

    sqlite          the one SQLite opener (0600, WAL, synchronous, busy timeout, schema)
    group_commit    the one group-commit engine; SqlJournal for savepointed operations
    writer_thread   the one thread each engine's connection is used from, in order
    times           how journals store time
    replay          ReplayStore and SharedReplayGuard (replay_sqlite: its SQLite book)
    outbox          responses and alerts awaiting delivery, on SQLite (outbox_sqlite: its rows)
    outbox_store    the outbox protocol; outbox_redis: the outbox on Redis Streams
    jobs            the jobs journal (JobStore) and its SQLite backend; jobs_redis: on Redis
    redis_streams   what the Redis Streams stores share (consumer names, groups, errors)
    quarantine      requests held by anomaly detection: QuarantineStore (protocol) and
                    its SQLite store (quarantine_audit: the operator's release and
                    delete decisions, beside them)
    threshold_memory, threshold_redis   the per-User-ID counters (CounterStore)
    threshold_sqlite   rules in force, their audit, saved counts
    threshold_state    the counters opened under the rules in force; count snapshots
    techspec_store  the techspec protocols (techspec_sqlite: their SQLite store)
    techspec        opens the techspec store (techspec.sqlite)
    local_commands  commands issued for local delivery, open until their 8.13 (protocol);
                    local_commands_sqlite: its SQLite store, opened by the composition root
    redis_shared    the one Redis every node shares ([state] backend = "redis"): client
                    (single, Sentinel, Cluster), key layout with hash tags, durable writes
    redis_batch     requests waiting together share one Redis round trip
    replay_redis, quarantine_redis, local_commands_redis, techspec_redis,
    threshold_state_redis   each store's Redis backend (the protocol's other side)
    node_identity   the owner of a shared quarantine release: this process's directory
    certfiles       certificate and key files; the certificate store; the DCC's key
    device_certfiles  device signing certificates (8.13 responses)
    operator_files  config, Users and inventory, XSDs, the threshold rules file, the
                    techspec tables and coverage files
    private_files   owner-only files and directories
"""

__all__ = [
    "certfiles",
    "device_certfiles",
    "jobs",
    "jobs_redis",
    "local_commands",
    "local_commands_redis",
    "local_commands_sqlite",
    "node_identity",
    "operator_files",
    "outbox",
    "outbox_redis",
    "outbox_sqlite",
    "outbox_store",
    "private_files",
    "quarantine",
    "quarantine_audit",
    "quarantine_redis",
    "redis_batch",
    "redis_shared",
    "redis_streams",
    "replay",
    "replay_redis",
    "sqlite",
    "techspec",
    "techspec_redis",
    "techspec_store",
    "threshold_memory",
    "threshold_redis",
    "threshold_sqlite",
    "threshold_state",
    "threshold_state_redis",
]
