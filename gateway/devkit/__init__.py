"""The dev kit: what a developer or a test needs, never the production path.

The composition root chooses the simulator as the default transport and mounts the
dev inbox; nothing below it imports this package.

    default         the embedded default state directory (`duisgw serve` with no config)
    devpki, estate  the dev SMKI PKI; the default Users and devices
    simulator       the embedded device estate (priority: its per-hub queues;
                    simulated_responses, simulated_use_cases: what devices answer)
    client          `duisgw send`; admin_client: the admin commands (techspec_client:
                    `duisgw techspec ...`)
    inbox           the dev inbox on the admin listener
"""

__all__ = [
    "admin_client",
    "client",
    "default",
    "devpki",
    "estate",
    "inbox",
    "simulator",
    "techspec_client",
]
