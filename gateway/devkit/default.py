"""The embedded default: a state directory a fresh machine can serve from at once.

`duisgw serve` with no arguments calls `ensure_default_state`, which creates
what is missing and leaves everything already there alone:

    duisgw-state/
      duisgw.toml      the dev config (edit it; it is yours after the first start)
      users.toml       the RTDS Users (gateway/devkit/estate.py)
      inventory.toml   the RTDS devices, one hub of each HAN/WAN variant
      pki/             dev SMKI PKI: issuing CA (OU 07), DCC XML signing (OU 89),
                       per User: XML signing (OU 87) and role certificates; pki/tls/
      *.sqlite         journals (replay counters, outbox, quarantine), the techspec
                       tables and Install and Leave cases, made on start
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.devkit.devpki import DevUser, generate_dev_pki
from gateway.devkit.estate import DCC_EUI64, dev_users, write_default_estate
from gateway.stores.private_files import make_private_dir

DEFAULT_STATE_DIR = Path("duisgw-state")
CONFIG_NAME = "duisgw.toml"
PKI_DIR = "pki"

_CONFIG_TEMPLATE = """\
# duis-gateway dev config, written by `duisgw serve` on first start.
# Paths are relative to this file. Reference: README.md, "Configuration".
state_dir = "."

[listen]
host = "127.0.0.1"
port = 8079

# Mutual TLS (DCCKI-style) on the DUIS listener; uncomment to require client certificates.
# [tls]
# certificate = "pki/tls/tls-server.cert.pem"
# private_key = "pki/tls/tls-server.key.pem"
# client_ca = "pki/tls/tls-ca.cert.pem"

[admin]
host = "127.0.0.1"
port = 8080
# Every admin route but /healthz, /readyz and /metrics needs the bearer token in
# admin.token (generated on first start, 0600); `duisgw` commands read it.
# token_file = "admin.token"

# The dev inbox on the admin listener: where Users with response_url = "dev-inbox"
# (all of users.toml's) receive their responses and alerts; `duisgw inbox` lists them.
[dev_inbox]
enabled = true
max_total_bytes = 16777216
max_message_bytes = 1048576
max_age_seconds = 604800

[duis]
versions = ["5.0", "5.1", "5.3", "5.4"]
dcc_eui64 = "{dcc}"
# xsd_dir = "../shared/duis/xsd"   # validate every request against its version's XSD

[trust]
certificate_dirs = ["pki"]
ca_anchors = []
crl_files = []
dcc_signing_certificate = "pki/{dcc_cert}.cert.pem"
dcc_signing_key = "pki/{dcc_cert}.key.pem"

[registry]
users_file = "users.toml"
inventory_file = "inventory.toml"

[thresholds]
store = "memory"

# Technical Specification versions (SEC A3) and Install and Leave: README, "Technical
# Specification versions". No tables are in force until you load some: the RTDS 12.2
# template names SMETS V1.58 and inventory.toml records no versions, which the
# consultation's example tables cannot place, so with them 12.2 and 8.1.1 for those devices
# would be refused (E11). Print the example with
# `duisgw techspec tables example`; load tables with `duisgw techspec tables set FILE`
# (audited, kept across restarts) or name a file here.
[techspec]
# tables_file = "sec-a3-tables.toml"
# coverage_file = "sm-wan-coverage.toml"
# report_warn_within_days = 90
# [techspec.install_leave]
# remedy_days = 90
# proactive_forecast_before = 2021-01-01
# DUIS publishes no DCCAlertCode for "SM WAN now available": no alert until both are set.
# [techspec.wan_available_alert]
# dcc_alert_code = "N..."
# hub_alert_code = "...."
"""


def ensure_default_state(state_dir: Path, now: dt.datetime) -> Path:
    """Create the default state directory's missing parts; return the config path."""
    make_private_dir(state_dir)
    users = [DevUser(eui64=u.eui64, label=u.label, role_codes=(u.role_code,)) for u in dev_users()]
    generate_dev_pki(state_dir / PKI_DIR, users, DCC_EUI64, now)
    write_default_estate(state_dir)
    config = state_dir / CONFIG_NAME
    if not config.exists():
        dcc_cert = "dsp-xml-sign-" + DCC_EUI64.replace("-", "") + "-ds"
        config.write_text(_CONFIG_TEMPLATE.format(dcc=DCC_EUI64, dcc_cert=dcc_cert))
    return config
