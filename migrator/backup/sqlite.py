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

from migrator import scratch
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

    def dump(self, path: Path, progress: ProgressCallback) -> None:
        self.connection.ensure_connection()
        source = self.connection.connection
        try:
            with closing(sqlite3.connect(path)) as target:
                source.backup(target, progress=self._give_up_when_busy("backed up"))
        except sqlite3.Error as exc:
            raise BackupFailed(
                f"SQLite backup of {self.connection.alias!r} failed: {first_line(exc)}."
            ) from exc

    def restore(
        self,
        path: Path,
        manifest: Manifest,
        *,
        keep_audit: Sequence[Statement],
        progress: ProgressCallback,
    ) -> None:
        with scratch.private_directory("sqlite-restore") as private:
            work_path = private / "restore.sqlite3"
            with path.open("rb") as source, open(scratch.private_file(work_path), "wb") as copy:
                shutil.copyfileobj(source, copy, COPY_CHUNK)
            try:
                with closing(sqlite3.connect(work_path)) as work:
                    self._prepare(work, keep_audit)
                    live = self._live()
                    work.backup(live, progress=self._give_up_when_busy("restored"))
            except sqlite3.Error as exc:
                raise BackupFailed(
                    f"Restore into {self.connection.alias!r} failed; nothing was changed: "
                    f"{first_line(exc)}."
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
