"""Private scratch directories for temporary files, and the sweep of those a kill left.

Password files, FIFOs, tools' error logs and working copies of databases live in a 0700
directory under the temporary directory, each file 0600. A ``TemporaryDirectory`` is not
removed when its process is killed, so each directory holds an OS lock on its ``.owner``
file for as long as its process lives; ``sweep`` (run by every command) removes the
directories whose lock nobody holds any more. A directory is renamed ``....removed``
before it is removed, so that one whose process was killed while removing it (its owner
file already gone) is not taken for one being made.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

try:
    import fcntl
except ImportError:  # Windows: no flock; leftovers are kept rather than guessed at
    fcntl = None  # type: ignore[assignment]

PREFIX: Final = "migrator-scratch-"
OWNER: Final = ".owner"
UNCLAIMED_GRACE: Final = 3600.0  # seconds: a directory killed before its lock was taken
REMOVED_SUFFIX: Final = ".removed"  # a directory being removed: every sweep may finish it


@contextmanager
def private_directory(purpose: str) -> Iterator[Path]:
    """A new 0700 directory for one operation's temporary files, removed afterwards."""
    sweep()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{purpose}-"))
    owner = _owned(path)
    try:
        yield path
    finally:
        _remove(path)
        os.close(owner)


def _remove(path: Path) -> None:
    """Rename, then remove: a kill midway leaves a name that every sweep removes."""
    removed = path.with_name(f"{path.name}{REMOVED_SUFFIX}")
    try:
        path.rename(removed)
    except OSError:
        removed = path
    shutil.rmtree(removed, ignore_errors=True)


def _owned(path: Path) -> int:
    """Give ``path`` its ``.owner`` file, locked before it has that name.

    A sweep that ran between creating the file and locking it would take the directory
    of a live process for a killed one's: the file is locked under a name no sweep reads,
    then renamed into place.
    """
    pending = path / f"{OWNER}.pending"
    owner = private_file(pending)
    if fcntl is not None:
        fcntl.flock(owner, fcntl.LOCK_EX)
    pending.rename(path / OWNER)
    return owner


def private_file(path: Path) -> int:
    """Create ``path`` for writing, 0600 whatever the umask; returns its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def sweep() -> int:
    """Remove the scratch directories of killed processes (this user's, nobody holds)."""
    if fcntl is None:
        return 0
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        with suppress(OSError):
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            if path.name.endswith(REMOVED_SUFFIX) or _abandoned(path):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


def _abandoned(path: Path) -> bool:
    try:
        descriptor = os.open(path / OWNER, os.O_RDONLY)
    except FileNotFoundError:  # killed between creating it and locking it, or just created
        return time.time() - path.stat().st_mtime > UNCLAIMED_GRACE
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        return True
    finally:
        os.close(descriptor)
