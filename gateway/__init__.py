"""The duis-gateway daemon, in layers; arrows point down only (.importlinter checks it).

    cli       `duisgw ...`: argument parsing, then compose or a dev-kit client
    config_check  `duisgw config check`: what compose would load, checked without serving
    compose   the composition root: builds every collaborator, hands each what it uses
    devkit    development only: dev PKI, default estate, simulator, clients, dev inbox
    edge      trio: listeners, HTTP, admin API, pipeline runner, dispatch, delivery
    stores    everything durable: one SQLite opener, one group-commit engine, the files
    core      no trio, no sockets, no sqlite3: the request's stages and decisions

Below them, the libraries: thresholds (the engine), parse_correlate (GBCS), mmc
(catalogues). A package's public modules are named in its `__all__`; the others are
its own (tools/import_cycles.py and the import contract read every import).
"""

__all__ = ["cli", "compose", "config_check", "core", "devkit", "edge", "stores"]
