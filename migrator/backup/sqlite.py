"""Native SQLite backups through SQLite's online backup API.

Backup: the API copies the live database page by page in one step, from Django's own
connection, so the copy is consistent even while other connections use the database.

Restore: the payload is copied to a private work file, checked (``PRAGMA quick_check``),
the live run audit is merged into it, and only then does the backup API copy the work file
into the live database, which SQLite does in one transaction on the destination: it is
either replaced whole or left as it was.
"""

import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

from migrator import interrupts, scratch
from migrator.backup.base import BackupEngine, Statement, first_line
from migrator.backup.manifest import Manifest
from migrator.exceptions import BackupFailed
from migrator.types import ProgressCallback

BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
COPY_CHUNK = 1 << 20
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds, as Python's sqlite3.connect() and Django wait


class SqliteBackupEngine(BackupEngine):
    format = "native"
    engine = "sqlite-backup-api"
    extension = ".sqlite3"

    def tool_version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} backup API"

    def dump(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        self.connection.ensure_connection()
        source = self.connection.connection
        try:
            with closing(sqlite3.connect(path)) as target:
                source.backup(target, progress=self._give_up_when_busy("backed up"))
                return row_counts(target)
        except sqlite3.Error as exc:
            raise BackupFailed(
                f"SQLite backup of {self.connection.alias!r} failed: {_reason(exc, path)}."
            ) from exc

    def dump_stream(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        """The database file itself, read front to back while no one can change it.

        The backup API needs a file it can seek in; an encrypted backup must not leave the
        plaintext in one. So a second connection takes the write lock (other connections
        keep reading), moves what the WAL holds into the file (a checkpoint that no older
        reader holds back), and the file's pages are copied as they are: a SQLite database
        image, counted in the same transaction.
        """
        name = self.connection.settings_dict["NAME"]
        if self.connection.is_in_memory_db():
            raise BackupFailed(
                f"Database {self.connection.alias!r} lives in memory; an encrypted backup "
                "reads a database file."
            )
        options = self.connection.settings_dict.get("OPTIONS") or {}
        timeout = float(options.get("timeout", DEFAULT_BUSY_TIMEOUT))
        try:
            with closing(sqlite3.connect(name, timeout=timeout, isolation_level=None)) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._checkpoint(db, name, timeout)
                    size = (
                        db.execute("PRAGMA page_count").fetchone()[0]
                        * db.execute("PRAGMA page_size").fetchone()[0]
                    )
                    with open(name, "rb") as source, open(path, "wb") as target:
                        _copy(source, target, size)
                    return row_counts(db)
                finally:
                    db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise BackupFailed(
                f"SQLite backup of {self.connection.alias!r} failed: {first_line(exc)}."
            ) from exc

    def _checkpoint(self, db: sqlite3.Connection, name: str, timeout: float) -> None:
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            return  # rollback journal: the file is the database while we hold the lock
        with closing(sqlite3.connect(name, timeout=timeout, isolation_level=None)) as other:
            busy, log, done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy or done != log:
            raise BackupFailed(
                f"Database {self.connection.alias!r} has readers holding back its WAL; it "
                "was not backed up. Try again when it is idle."
            )

    def restore(
        self,
        path: Path,
        manifest: Manifest,
        *,
        keep_audit: Sequence[Statement],
        progress: ProgressCallback,
        in_place: bool = False,  # always: the file, or one transaction
    ) -> str | None:
        with scratch.private_directory("sqlite-restore") as private:
            work_path = private / "restore.sqlite3"
            with path.open("rb") as source, open(scratch.private_file(work_path), "wb") as copy:
                shutil.copyfileobj(source, copy, COPY_CHUNK)
            writing = work_path
            try:
                with closing(sqlite3.connect(work_path)) as work:
                    self._prepare(work, keep_audit)
                    live = self._live()
                    writing = Path(self.connection.settings_dict["NAME"])
                    interrupts.hold_until_the_run_ends()  # the copy commits as it ends
                    work.backup(live, progress=self._give_up_when_busy("restored"))
            except sqlite3.Error as exc:
                raise BackupFailed(
                    f"Restore into {self.connection.alias!r} failed; nothing was changed: "
                    f"{_reason(exc, writing)}."
                ) from exc

    def _prepare(self, work: sqlite3.Connection, keep_audit: Sequence[Statement]) -> None:
        if work.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupFailed("The backup's SQLite file is damaged (quick_check failed).")
        for sql, params in keep_audit:
            work.execute(sql.replace("%s", "?"), list(params))
        work.commit()

    def _give_up_when_busy(self, done: str) -> Callable[[int, int, int], None]:
        """Python retries a busy backup step forever: stop after the connection's timeout."""
        options = self.connection.settings_dict.get("OPTIONS") or {}
        deadline = time.monotonic() + float(options.get("timeout", DEFAULT_BUSY_TIMEOUT))

        def progress(status: int, remaining: int, total: int) -> None:
            if status in BUSY and time.monotonic() >= deadline:
                raise BackupFailed(
                    f"Database {self.connection.alias!r} is locked by another connection; "
                    f"it was not {done}. Try again when it is idle."
                )

        return progress

    def _live(self) -> sqlite3.Connection:
        self.connection.ensure_connection()
        if self.connection.in_atomic_block:
            raise BackupFailed(
                f"Database {self.connection.alias!r} is inside a transaction; the backup API "
                "needs it outside one."
            )
        return self.connection.connection


def _reason(exc: sqlite3.Error, writing: Path) -> str:
    """SQLite's error; for a full disk, which one (SQLite says "database or disk is full")."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return (
            f"no room left for {str(writing)!r} (its disk is full, or the database at its size "
            "limit); free space there and run it again"
        )
    return first_line(exc)


def row_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Rows of every table of a SQLite database, SQLite's own tables left out."""
    names = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_'"
    ).fetchall()
    return {
        name: db.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()[0]
        for (name,) in sorted(names)
    }


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy(source, target, size: int) -> None:
    while size > 0:
        chunk = source.read(min(COPY_CHUNK, size))
        if not chunk:
            raise BackupFailed("The SQLite file is shorter than its page count; not backed up.")
        target.write(chunk)
        size -= len(chunk)
