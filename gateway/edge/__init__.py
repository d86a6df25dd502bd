"""The edge: trio and the network. Imports stores and core, never the dev kit.

listeners       bind, serve until a signal, drain (the designed shutdown)
server          one connection: HTTP/1.1 keep-alive, limits, the crash boundary
                (http: the sans-IO seam; connection_slots; tls, tls_refusals)
duis_handler    DUIS endpoints -> the pipeline
pipeline        the stage table's runner; screen: the thresholds stage;
                dispatch: the I/O of each answer mode; transport: the device protocol;
                local_delivery: CV 2/3/6/7 answers and 8.13 (the local command store)
lifecycle       asynchronous jobs: journal, device, outbox
device_alerts   device alerts (in replies, in estate link `alert` frames) to their Users
delivery        POST to the Users' Receive Response URLs, in order, with retries
                (poster: the HTTP/1.1 client it posts with)
quarantine_ops  release, delete and expiry of held requests
admin           the admin routes (admin_auth, admin_params, admin_replay,
                admin_thresholds, admin_quarantine, admin_views, techspec_admin)
techspec_service  the Technical Specification and Install and Leave rules in force
                (techspec_dispatch: the DUIS services they answer; techspec_alerts:
                the SM WAN available alert into the outbox)
console_files   the operator console's static files (console/), served at /console/
traffic_summary the live traffic counts the console's overview shows
metrics         every metric, declared once
log_format      `--log-format json|text`: how records reach stderr
service_notifier  the notify socket, the heartbeat (WATCHDOG=1, STATUS=) and the
                daemon's moments told to the service manager
workers         `duisgw serve --workers N`; worker_notify: the supervisor's sockets
"""

__all__ = [
    "admin",
    "admin_auth",
    "admin_params",
    "admin_quarantine",
    "admin_replay",
    "admin_thresholds",
    "admin_views",
    "console_files",
    "delivery",
    "device_alerts",
    "dispatch",
    "duis_handler",
    "http",
    "lifecycle",
    "listeners",
    "local_delivery",
    "log_format",
    "metrics",
    "pipeline",
    "poster",
    "quarantine_ops",
    "screen",
    "server",
    "service_notifier",
    "techspec_admin",
    "techspec_alerts",
    "techspec_dispatch",
    "techspec_service",
    "tls",
    "traffic_summary",
    "transport",
    "worker_notify",
    "workers",
]
