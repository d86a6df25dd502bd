"""Which node this is, across its restarts: the owner of the quarantine releases it began.

On SQLite the state directory is the node, so a worker's index says whose unfinished
releases to resume. On Redis every node shares the quarantine, and every node has a
worker 0: the owner must name the process's own directory instead, or a restarting node
would resume (and process a second time) a release a live peer is still finishing. A
random number, written once in the worker's own directory (`node.id`; the state
directory itself with one worker), is that name; it stays with the directory, so the
process that comes back on it resumes exactly its own releases.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Final

from gateway.stores.private_files import write_private_atomically

FILE_NAME: Final = "node.id"
_OWNER_BITS: Final = 48  # below 2**53: exact in any JSON reader


def release_owner(own_dir: Path) -> int:
    """The owner id of the process on `own_dir`, made on first use. Blocking."""
    path = own_dir / FILE_NAME
    try:
        node = int(path.read_text("ascii").strip())
    except FileNotFoundError:
        node = secrets.randbits(_OWNER_BITS) + 1  # not 0..1023: never a worker index
        write_private_atomically(path, f"{node}\n".encode())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a node number ({exc}); delete it to have one made") from None
    return node
