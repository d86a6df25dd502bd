"""The core: the request's stages and every decision over values (sans-IO).

No trio, no sockets, no sqlite3, no files: the stores read the operator's files and
hand the core what they mean. Imports only thresholds, parse_correlate and mmc below.

    stages          the pipeline as one table; RequestChecks (ingest ... body)
    outcome         what passes between stages, how a stage stops, the answer
    answers         every answer built in one place (acknowledgements, signed responses)
    commands        answer_mode (sync or async), the device command, CV 5/6/7 checks
    ingest          hardened XML parse, header, XSD validation
    signature       the XMLDSig profile, parse and verify (signature_profile,
                    signature_refusals: its shared values and the reason walk)
    signing         compact signing; ResponseSigner (the DCC's key)
    certstore, dn, der   SMKI certificates: the in-memory store and the signer checks
    access          access control; registry: Users and inventory snapshots
    trust_report    certificates and each User's signer per served version (the DCC's
                    OU 89 when it originates); the Users who cannot sign, as values
    snapshot        trust + Users + inventory as one value; its holder; reload results
    replay_rules    the replay rule and its in-memory model
    versions        DUIS version routing; version_mismatch: the alert for the others
    dcc_services    non-device answers (CV 8); device: commands and replies as values
    device_alerts   a device alert's User, alert code and message id, or why none
    local_commands  commands for local delivery (CV 2/6) and the 8.13 checks
    config, simulator_config   every config table, decoded from TOML
    clock           wall-clock time, injected
    log_fields      structured log events: a stable name and its fields
    sd_notify       the service manager's notify protocol (systemd), as values;
                    worker_fleet: what the --workers supervisor tells it
    techspec/       Technical Specification versions and Install and Leave
"""

__all__ = [
    "access",
    "answers",
    "certstore",
    "clock",
    "commands",
    "config",
    "dcc_services",
    "der",
    "device",
    "device_alerts",
    "ingest",
    "local_commands",
    "log_fields",
    "outcome",
    "registry",
    "replay_rules",
    "sd_notify",
    "signature",
    "signing",
    "simulator_config",
    "snapshot",
    "stages",
    "techspec",
    "trust_report",
    "version_mismatch",
    "versions",
    "worker_fleet",
]
