"""Technical Specification versions (SEC A3) and Install and Leave: the pure core.

The rules of the September 2016 consultation (§1.1, §1.2, §3.6 ¶107-127) over values:
no trio, no sockets, no files. It imports only mmc/, the standard library, msgspec and
lxml (to read request bodies): it moved into the core layer (gateway/core/) as a unit.

    versions       TS and GBCS versions, validity periods, the GB day
    tables         the TS Applicability Tables, compatibility matrix and products
    rules          installation, maintenance, auxiliary, whole-system rules (¶ cited)
    estate         the inventory as the rules see it (protocols), premises, context
    firmware       Update Firmware (11.1) warning lists
    coverage       the SM WAN Coverage Database
    install_leave  reactive/proactive Install and Leave cases (a state machine), report
    wan_matrix     Request WAN Matrix (12.1) answers in each version's shape
    answers        12.2, 8.1.1, 8.14.2 decisions and their DUIS codes; 8.2 versions
    alerts         the SM WAN available DCC alert
    report         devices whose version lost (or is losing) its MVP
    bodies         the request body facts these need

The consultation's example tables ship as fixtures/consultation-2016-example.toml.
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "alerts",
    "answers",
    "bodies",
    "coverage",
    "estate",
    "example_tables_document",
    "firmware",
    "install_leave",
    "report",
    "rules",
    "tables",
    "versions",
    "wan_matrix",
]

EXAMPLE_TABLES_RESOURCE = "fixtures/consultation-2016-example.toml"


def example_tables_document() -> bytes:
    """The consultation's example TS Applicability Tables (TOML), as shipped."""
    return resources.files(__package__).joinpath(EXAMPLE_TABLES_RESOURCE).read_bytes()
