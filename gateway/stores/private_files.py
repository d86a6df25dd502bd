"""Files that hold message content or credentials: the owner's alone.

Journals keep full signed requests and responses, the inbox and the audit keep
documents, and `admin.token` is the admin credential: each is created 0600 in a
state directory that is 0700. Files left looser by an earlier version are
tightened at start. SQLite creates its `-wal`, `-shm` and `-journal` files with
the mode of the database file, so creating the database 0600 before SQLite opens
it covers those too.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

log = logging.getLogger("duisgw.files")

PRIVATE_DIR_MODE: Final = 0o700
PRIVATE_FILE_MODE: Final = 0o600
# What a process serving the gateway creates: owner only (set by `duisgw serve`).
PRIVATE_UMASK: Final = 0o077
SQLITE_SIDE_FILES: Final = ("-wal", "-shm", "-journal")
# In a state directory: the journals and everything that holds documents.
PRIVATE_SUFFIXES: Final = (".sqlite", ".jsonl", ".token", *SQLITE_SIDE_FILES)


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) if missing; make it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR_MODE)


def prepare_private_sqlite(path: Path) -> None:
    """Create the database file 0600 if missing and tighten it and its side files."""
    _create_private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            _tighten(side, PRIVATE_FILE_MODE)


def _create_private_file(path: Path) -> None:
    """An empty 0600 file if missing; an existing one is made 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)  # a journal may be a link
    os.close(fd)
    _tighten(path, PRIVATE_FILE_MODE)


def append_private(path: Path, data: bytes) -> None:
    """Append to a 0600 file (created so if missing). Blocking."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "ab") as file:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        file.write(data)


def write_private_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (0600) so a reader sees the old or the new file whole."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE
    )
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        file.write(data)
        file.flush()
        os.fsync(fd)
    os.replace(temporary, path)


def tighten_state_dir(directories: Iterable[Path]) -> None:
    """Make each directory 0700 and the private files directly in it 0600."""
    for directory in directories:
        make_private_dir(directory)
        for entry in directory.iterdir():
            if entry.name.endswith(PRIVATE_SUFFIXES) and entry.is_file():
                _tighten(entry, PRIVATE_FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        path.chmod(current & mode)
        log.info("%s was mode %04o; now %04o", path.name, current, current & mode)
