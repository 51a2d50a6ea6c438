"""What every backup format implements, and how a format is chosen for a connection."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, Final, TypeAlias

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import secrets, timeouts
from migrator.backup.manifest import Manifest
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed
from migrator.types import ProgressCallback

Statement: TypeAlias = tuple[str, Sequence[Any]]  # (SQL with %s placeholders, parameters)
# Opens a payload's plaintext from its start, anew each time: the payload file itself, or
# a FIFO that a decryption of its own writes into (to read once, in order).
PlaintextOpener: TypeAlias = Callable[[], AbstractContextManager[Path]]
# How every restore runs psql: no ~/.psqlrc, no chatter, never a password prompt, and
# stopping at the first error (a script that is not run to its end is never committed).
PSQL_OPTIONS: Final = ("--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1")
# The relations a restore replaces: every one outside the system schemas that no extension
# owns and no table owns (identity and serial sequences go with their tables).
OWN_RELATIONS: Final = """
    SELECT c.oid, c.relkind, n.nspname, c.relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition
      AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
      AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
          AND d.deptype IN ('e', 'a', 'i'))"""


class BackupEngine(ABC):
    """One format: writes a payload file, and restores one into a database atomically."""

    format: ClassVar[str]  # native | portable
    engine: ClassVar[str]  # recorded in the manifest
    extension: ClassVar[str]  # payload file name suffix

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def check_backup(self) -> None:
        """Raise BackupFailed before anything is written when this backup cannot work."""
        return

    def check_restore(self, manifest: Manifest, plaintext: PlaintextOpener) -> None:
        """Raise BackupFailed before the database is touched when this restore cannot work;
        ``plaintext`` opens the payload, for what must be read of it first."""
        return

    @abstractmethod
    def tool_version(self) -> str:
        """The name and version of what writes the payload."""

    def large_objects(self) -> int | None:
        """PostgreSQL large objects in the payload ``dump`` wrote; None when not counted."""
        return None

    @abstractmethod
    def dump(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        """Write a consistent copy of the database to ``path`` (an existing empty 0600 file).

        Returns the rows of each table in that copy, which a restore drill checks.
        """

    def dump_stream(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        """``dump`` into a path that can only be written front to back (a FIFO)."""
        return self.dump(path, progress)

    def restoring_ahead(
        self, path: Path, manifest: Manifest, progress: ProgressCallback
    ) -> AbstractContextManager[None]:
        """Begin restoring ``path`` while the caller goes on to take the run lock, where that
        touches nothing the restore does not swap in later; ``restore`` of the same path in
        this context then finishes it. Most engines cannot: they begin nothing."""
        return nullcontext()

    def prepare_target(self, manifest: Manifest) -> None:
        """Make what migrator's own tables need in the database before the run lock creates
        them there, where the restore would make it anyway (after the guard, before the
        lock). Most engines need nothing."""
        return

    @abstractmethod
    def restore(
        self,
        path: Path,
        manifest: Manifest,
        *,
        keep_audit: Sequence[Statement],
        progress: ProgressCallback,
        in_place: bool = False,
    ) -> str | None:
        """Replace the database's contents with the payload, all or nothing; the name of
        the database it replaced and kept (a parallel restore's swap), else None.

        ``path`` may be a FIFO (an encrypted backup being decrypted): read it once, in order.

        ``keep_audit`` runs in the same transaction after the data is restored, so that
        runs recorded after the backup survive it (empty when the engine cannot run them
        there; the caller then runs them afterwards). ``in_place``: into this database
        itself whatever ``RESTORE_JOBS`` says, never by a swap (a drill's scratch one).
        """


def server_version(connection: BaseDatabaseWrapper) -> str:
    """The database server's version, as people write it ("16.2", "3.40.1")."""
    if connection.vendor == "postgresql":
        number = connection.pg_version
        if number >= 100000:
            return f"{number // 10000}.{number % 10000}"
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    if connection.vendor == "sqlite":
        import sqlite3

        return sqlite3.sqlite_version
    return ".".join(str(part) for part in connection.get_database_version())


def connect(connection: BaseDatabaseWrapper, *, must_exist: bool = False) -> None:
    """Open the connection now, so that a server that is down is one clear message.

    ``must_exist``: refuse a SQLite file that is not there (connecting would create it).
    """
    sqlite_file = connection.vendor == "sqlite" and not connection.is_in_memory_db()
    name = str(connection.settings_dict["NAME"])
    if must_exist and sqlite_file and not Path(name).is_file():
        raise BackupFailed(
            f"The SQLite database of {connection.alias!r} does not exist ({name!r}); "
            "nothing was changed."
        )
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        check = (
            "Check that the file's directory exists and is readable"
            if sqlite_file
            else "Check that the server is running and reachable"
        )
        reason = first_line(exc, connection)
        raise BackupFailed(
            f"Cannot connect to database {connection.alias!r}: "
            f"{reason}{timeouts.unanswered(connection, reason)}. {check}; nothing was changed."
        ) from exc


def locks_not_granted(
    connection: BaseDatabaseWrapper,
    what: str,
    attempts: int,
    blockers: list[timeouts.BlockingSession],
) -> BackupFailed:
    """A restore that gave up waiting for its locks on ``what``, naming who held them."""
    return BackupFailed(
        f"Restore into {connection.alias!r} could not lock {what} within lock_timeout "
        f"{get_settings().pg_lock_timeout:g}s in {attempts} attempt(s); blocked by "
        f"{timeouts.describe_blockers(blockers)}. Nothing was changed: end or wait for that "
        "session, then run again (MIGRATOR['PG_LOCK_TIMEOUT'] and LOCK_RETRIES set how long "
        "the restore waits)."
    )


def lock_wait_failed(
    connection: BaseDatabaseWrapper,
    what: str,
    waited: float,
    blockers: list[timeouts.BlockingSession],
) -> BackupFailed:
    """A backup that gave up waiting for a lock on ``what`` within ``backup_lock_wait``
    (``waited`` seconds), naming who held it."""
    return BackupFailed(
        f"Backup of {connection.alias!r} could not lock {what} within {waited:g}s; "
        f"blocked by {timeouts.describe_blockers(blockers)}. Nothing was stored: end or "
        "wait for that session, then run again (MIGRATOR['PG_LOCK_TIMEOUT'] x (1 + "
        "LOCK_RETRIES) sets how long a backup waits)."
    )


def first_line(error: object, connection: BaseDatabaseWrapper | None = None) -> str:
    """The first meaningful line of an error, without the connection's password in it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = (lines[0] if lines else type(error).__name__).rstrip(".")
    return scrub(text, connection)


def scrub(text: str, connection: BaseDatabaseWrapper | None) -> str:
    """``text`` masked, with the connection's own password (if any) among the secrets."""
    if connection is None:
        return secrets.mask(text)
    return secrets.mask(text, secrets=secrets.configured_secrets(connection.settings_dict))


ENGINES: Final[dict[tuple[str, str], str]] = {
    ("native", "postgresql"): "migrator.backup.postgres.PgDumpEngine",
    ("native", "sqlite"): "migrator.backup.sqlite.SqliteBackupEngine",
    ("portable", "postgresql"): "migrator.backup.portable.PortableEngine",
    ("portable", "sqlite"): "migrator.backup.portable.PortableEngine",
}


def engine_for(connection: BaseDatabaseWrapper, format: str) -> BackupEngine:
    """The engine for a format on this connection's vendor; BackupFailed when there is none."""
    from django.utils.module_loading import import_string

    path = ENGINES.get((format, connection.vendor))
    if path is None:
        if format not in {name for name, _ in ENGINES}:
            raise BackupFailed(f"Unknown backup format {format!r}; use native or portable.")
        raise BackupFailed(
            f"No {format} backup for {connection.vendor!r} databases; migrator supports "
            "PostgreSQL and SQLite."
        )
    return import_string(path)(connection)
