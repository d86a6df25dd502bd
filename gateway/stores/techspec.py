"""Opens the techspec store the gateway uses: `techspec.sqlite` in the state directory.

The one public way in (the SQLite module is the stores' own, by the import contract):
every worker opens the same file, so tables and Install and Leave cases are shared,
and each worker refreshes its decoded copy of the tables from it
(gateway.edge.techspec_service). The file is 0600, like every journal
(gateway.stores.sqlite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.stores.sqlite import Synchronous
from gateway.stores.techspec_sqlite import FILE_NAME, open_techspec_store
from gateway.stores.techspec_store import TechspecStore

__all__ = ["FILE_NAME", "open_techspec"]


@asynccontextmanager
async def open_techspec(
    state_dir: Path, *, synchronous: Synchronous = "FULL"
) -> AsyncIterator[TechspecStore]:
    """The running store for the duration of the block."""
    async with open_techspec_store(state_dir / FILE_NAME, synchronous=synchronous) as store:
        yield store
