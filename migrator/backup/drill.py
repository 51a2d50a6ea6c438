"""The restore drill, ``backup --verify ID --full``: proof that a backup restores.

A checksum proves the payload is the one written, not that it restores: a missing
extension or role, or a payload edited consistently with its checksum, shows only when
the data goes back into a database. The drill restores the backup into a scratch
database (PostgreSQL: a new database on the same server; SQLite: a new file) with the
same engine as ``restore``, compares each table's rows with the counts recorded in the
manifest when the backup was taken, checks the migration state, and drops the scratch
database whatever happens. The configured database is never touched. A drill killed
half-way leaves a scratch database or file behind; the next drill removes it (one that
a live drill still uses is left alone: PostgreSQL refuses to drop a database in use, and
a SQLite file lives in a scratch directory its live drill holds, see ``migrator.scratch``).
"""

import json
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

from migrator import sessions
from migrator.backup import postgres, scratchdb, sqlite
from migrator.backup.backups import verified_payload
from migrator.backup.base import connect, engine_for, first_line
from migrator.backup.manifest import Manifest
from migrator.backup.restoring import opened_payload
from migrator.backup.storage import backup_store
from migrator.exceptions import BackupFailed
from migrator.scratch import private_directory
from migrator.types import ProgressCallback, ProgressEvent, ignore_progress

logger = logging.getLogger(__name__)

SCRATCH_PREFIX: Final = "migrator_drill_"


@dataclass
class DrillReport:
    """What a drill found; ``as_dict()`` is the ``backup --verify ID --full --json`` document."""

    backup_id: str
    vendor: str
    format: str
    encrypted: bool
    scratch: str = ""
    tables: list[dict[str, Any]] = field(default_factory=list)  # table, recorded, restored
    migrations_match: bool = False
    cause: str = ""  # why it failed; "" when it passed
    drilled: str = ""
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.cause

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "vendor": self.vendor,
            "format": self.format,
            "encrypted": self.encrypted,
            "scratch": self.scratch,
            "tables": self.tables,
            "migrations_match": self.migrations_match,
            "outcome": "passed" if self.passed else "failed",
            "cause": self.cause,
            "drilled": self.drilled,
            "duration": round(self.duration, 3),
        }


def drill_backup(
    backup_id: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    identity: str | None = None,
    progress: ProgressCallback = ignore_progress,
) -> DrillReport:
    """Restore a backup into a scratch database and check it; the result is also noted.

    The scratch database is made on the server of the backup's own database alias when it
    is configured with the backup's vendor (else ``database``'s). BackupFailed only when
    the drill cannot start (unknown or damaged backup, no identity); a backup that does not
    restore is a report whose ``cause`` says why.
    """
    started = time.monotonic()
    with verified_payload(backup_id, identity) as (manifest, identities, local):
        connection = _server_for(manifest, database)
        connect(connection)
        report = DrillReport(
            backup_id=manifest.id,
            vendor=connection.vendor,
            format=manifest.format,
            encrypted=bool(manifest.encryption),
        )
        progress(ProgressEvent("drill_start", message=f"Drilling {manifest.id}..."))
        try:
            with scratch_database(connection) as scratch:
                report.scratch = str(scratch.settings_dict["NAME"])
                _restore_and_compare(manifest, scratch, local, identities, report, progress)
        except BackupFailed as exc:
            report.cause = str(exc)
    report.drilled = datetime.now(UTC).isoformat()
    report.duration = time.monotonic() - started
    _note(manifest, report)
    return report


def _server_for(manifest: Manifest, database: str) -> BaseDatabaseWrapper:
    """The backup's own database alias when it is configured with its vendor, else
    ``database``: the scratch database goes on that one's server."""
    for alias in (manifest.database, database):
        if alias in connections and connections[alias].vendor == manifest.vendor:
            return connections[alias]
    raise BackupFailed(
        f"Backup {manifest.id!r} is a {manifest.vendor} backup and {database!r} is not a "
        f"{manifest.vendor} database; pass --database naming one, for the scratch database."
    )


def _restore_and_compare(
    manifest: Manifest,
    scratch: BaseDatabaseWrapper,
    local: Path,
    identities: list,
    report,
    progress,
) -> None:
    engine = engine_for(scratch, manifest.format)
    engine.check_restore(manifest, partial(opened_payload, local, identities))
    with opened_payload(local, identities) as payload:
        engine.restore(payload, manifest, keep_audit=[], progress=progress, in_place=True)
    restored = _row_counts(scratch, manifest)
    report.tables = [
        {"table": table, "recorded": manifest.tables.get(table), "restored": restored.get(table)}
        for table in sorted(set(manifest.tables) | set(restored))
    ]
    applied = frozenset(MigrationRecorder(scratch).applied_migrations())
    report.migrations_match = applied == manifest.applied
    # Backups taken before manifests recorded row counts: the restore itself is the proof.
    compared = report.tables if manifest.tables else []
    wrong = [row for row in compared if row["recorded"] != row["restored"]]
    if wrong:
        first = wrong[0]
        more = f" (and {len(wrong) - 1} more table(s))" if len(wrong) > 1 else ""
        raise BackupFailed(
            f"Table {first['table']!r} has {_rows(first['restored'])} after the restore; the "
            f"backup recorded {_rows(first['recorded'])}{more}."
        )
    if not report.migrations_match:
        raise BackupFailed(
            f"The restored migration state differs from the backup's: {len(applied)} applied "
            f"migration(s), the manifest records {len(manifest.applied)}."
        )


def _rows(count: int | None) -> str:
    return "no such table" if count is None else f"{count} row(s)"


def _row_counts(scratch: BaseDatabaseWrapper, manifest: Manifest) -> dict[str, int]:
    """What the restore gave, counted as the backup counted it."""
    try:
        if manifest.format == "portable":  # the payload holds these tables only
            return _count_tables(scratch, list(manifest.tables))
        if scratch.vendor == "postgresql":
            with scratch.cursor() as cursor:
                return postgres.row_counts(cursor)
        scratch.ensure_connection()
        return sqlite.row_counts(scratch.connection)
    except DatabaseError as exc:
        raise BackupFailed(f"Counting the restored rows failed: {first_line(exc)}.") from exc


def _count_tables(scratch: BaseDatabaseWrapper, tables: list[str]) -> dict[str, int]:
    existing = set(scratch.introspection.table_names())
    counts = {}
    with scratch.cursor() as cursor:
        for table in tables:
            if table in existing:
                cursor.execute(f"SELECT count(*) FROM {scratch.ops.quote_name(table)}")
                counts[table] = cursor.fetchone()[0]
    return counts


@contextmanager
def scratch_database(connection: BaseDatabaseWrapper) -> Iterator[BaseDatabaseWrapper]:
    """A new empty database of the connection's vendor, dropped afterwards whatever happens."""
    if connection.vendor == "postgresql":
        with _postgresql_scratch(connection) as scratch:
            yield scratch
    elif connection.vendor == "sqlite":
        with _sqlite_scratch(connection) as scratch:
            yield scratch
    else:
        raise BackupFailed(f"No restore drill for {connection.vendor!r} databases.")


@contextmanager
def _postgresql_scratch(connection: BaseDatabaseWrapper) -> Iterator[BaseDatabaseWrapper]:
    admin = sessions.own_session(connection)
    try:
        name = scratchdb.create(admin, connection, SCRATCH_PREFIX, then="The drill needs CREATEDB.")
    except BackupFailed:
        admin.close()
        raise
    try:
        with scratchdb.registered(connection, name) as scratch:
            scratchdb.connect(  # a session in it tells other drills it is live
                scratch,
                connection,
                failing="The drill cannot use a scratch database on the server of "
                f"{connection.alias!r}",
                then="Let the role connect to databases it creates (pg_hba.conf).",
            )
            yield scratch
    finally:
        try:
            scratchdb.drop(admin, name)
        finally:
            admin.close()


@contextmanager
def _sqlite_scratch(connection: BaseDatabaseWrapper) -> Iterator[BaseDatabaseWrapper]:
    """A new file in a private scratch directory: a killed drill's is swept with it."""
    with private_directory("drill") as private:
        path = private / f"{SCRATCH_PREFIX}{secrets.token_hex(6)}.sqlite3"
        with scratchdb.registered(connection, str(path)) as scratch:
            yield scratch


def _note(manifest: Manifest, report: DrillReport) -> None:
    """Keep the drill's outcome beside the backup, for ``backup --list``/``migrationstatus``."""
    note = {
        "drilled": report.drilled,
        "outcome": report.as_dict()["outcome"],
        "cause": report.cause,
    }
    store = backup_store()
    try:
        if store.read_manifest(manifest.id) is None:  # deleted meanwhile (a prune): no note
            return
        store.write_note(manifest.id, json.dumps(note, sort_keys=True).encode())
    except (OSError, BackupFailed) as exc:
        logger.warning("Could not note the drill of %s: %s", manifest.id, exc)


def last_drill(backup_id: str) -> dict[str, str] | None:
    """The last drill's ``drilled``, ``outcome`` and ``cause``, or None (never drilled)."""
    try:
        raw = backup_store().read_note(backup_id)
        note = json.loads(raw) if raw else None
    except (OSError, ValueError, BackupFailed):
        return None
    return note if isinstance(note, dict) else None
