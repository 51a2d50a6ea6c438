"""Taking, listing, verifying and pruning backups."""

import logging
import platform
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import django
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

import migrator
from migrator import audit, guard
from migrator.backup.base import connect, engine_for, first_line, server_version
from migrator.backup.manifest import (
    LIST_HINT,
    REASONS,
    Manifest,
    check_backup_id,
    disk_migrations,
    load_manifest,
    migration_state,
    new_backup_id,
)
from migrator.backup.storage import BackupStore, backup_store, file_digest
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed, InvalidRequest
from migrator.models import Run
from migrator.types import ConfirmCallback, ProgressCallback, ProgressEvent, ignore_progress

logger = logging.getLogger(__name__)


def create_backup(
    database: str = DEFAULT_DB_ALIAS,
    *,
    format: str = "native",
    label: str = "",
    reason: str = "manual",
    run: Run | None = None,
    progress: ProgressCallback = ignore_progress,
) -> Manifest:
    """Back up a database; the backup exists once its payload is on disk and hashed."""
    if reason not in REASONS:
        raise InvalidRequest(f"Unknown backup reason {reason!r}; one of {', '.join(REASONS)}.")
    connection = connections[database]
    engine = engine_for(connection, format)
    connect(connection, must_exist=True)
    engine.check_backup()
    store = backup_store()
    disk = disk_migrations()
    state = migration_state(connection, disk)
    backup_id = new_backup_id(database)
    filename = f"{backup_id}{engine.extension}"
    progress(ProgressEvent("backup_start", message=f"Backing up {database!r} ({format})..."))
    started = time.monotonic()
    try:
        with store.staging(filename) as staged:
            engine.dump(staged, progress)
            if migration_state(connection, disk) != state:
                raise BackupFailed(
                    f"Migrations were applied to {database!r} during the backup; take it again."
                )
            with staged.open("rb") as handle:
                size, sha256 = file_digest(handle)
            manifest = Manifest(
                id=backup_id,
                created=datetime.now(UTC).isoformat(),
                label=label,
                reason=reason,
                database=database,
                database_name=str(connection.settings_dict["NAME"] or ""),
                vendor=connection.vendor,
                server_version=server_version(connection),
                format=format,
                engine=engine.engine,
                tool=engine.tool_version(),
                django_version=django.get_version(),
                migrator_version=migrator.__version__,
                python_version=platform.python_version(),
                payload=filename,
                size=size,
                sha256=sha256,
                migrations=state,
                run_id=run.pk if run is not None else None,
                host=socket.gethostname(),
                actor=audit.actor(),
                duration=round(time.monotonic() - started, 3),
            )
            store.publish(staged, filename, backup_id, manifest.to_json())
    except OSError as exc:
        raise BackupFailed(
            f"Cannot write backup {backup_id!r} to {store.location}: {first_line(exc)}."
        ) from exc
    except DatabaseError as exc:
        raise BackupFailed(
            f"Backup of {database!r} failed: {first_line(exc, connection)}; nothing was stored."
        ) from exc
    logger.info("Backup %s of %r taken: %s, %d bytes", backup_id, database, format, size)
    progress(
        ProgressEvent(
            "backup_done",
            message=f"Backup {backup_id} taken ({human_size(size)}, {manifest.duration:.1f}s).",
            data={"backup_id": backup_id},
        )
    )
    return manifest


def list_backups(database: str | None = None) -> list[Manifest]:
    """Every readable backup (of one database alias, when given), newest first."""
    store = backup_store()
    manifests = []
    for backup_id in store.backup_ids():
        try:
            manifest = _read(store, backup_id)
        except BackupFailed as exc:
            logger.warning("Skipping backup %s: %s", backup_id, exc)
            continue
        if database is None or manifest.database == database:
            manifests.append(manifest)
    return sorted(manifests, key=lambda m: (m.created, m.id), reverse=True)


def get_manifest(backup_id: str) -> Manifest:
    """The checked manifest of a backup; BackupFailed (exit 6) when unknown or altered."""
    return _read(backup_store(), check_backup_id(backup_id))


def _read(store: BackupStore, backup_id: str) -> Manifest:
    raw = store.read_manifest(backup_id)
    if raw is None:
        raise BackupFailed(f"No backup {backup_id!r} in {store.location}; {LIST_HINT}.")
    return load_manifest(raw, backup_id=backup_id)


def verify_backup(backup_id: str) -> Manifest:
    """Check the manifest's seal and re-hash the payload; BackupFailed when either fails."""
    store = backup_store()
    manifest = _read(store, check_backup_id(backup_id))
    try:
        with store.open_payload(manifest.payload) as handle:
            size, sha256 = file_digest(handle)
    except FileNotFoundError:
        raise BackupFailed(
            f"The payload of backup {backup_id!r} ({manifest.payload}) is missing."
        ) from None
    except OSError as exc:
        raise BackupFailed(f"Cannot read backup {backup_id!r}: {first_line(exc)}.") from exc
    check_digest(manifest, size, sha256)
    return manifest


def check_digest(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.size:
        raise BackupFailed(
            f"The payload of backup {manifest.id!r} is damaged: {size} bytes instead of "
            f"{manifest.size} (truncated?); do not restore it."
        )
    if sha256 != manifest.sha256:
        raise BackupFailed(
            f"The payload of backup {manifest.id!r} is damaged: its SHA-256 does not match "
            "the manifest; do not restore it."
        )


@dataclass
class PruneReport:
    """What ``prune_backups`` deleted and kept; ``as_dict()`` is the ``--json`` document."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)  # kept as the current state's only one

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "kept": self.kept, "protected": self.protected}


def prune_backups(
    *,
    keep: int | None = None,
    database: str | None = None,
    assume_yes: bool = False,
    confirm: ConfirmCallback | None = None,
) -> PruneReport:
    """Delete all but the newest ``keep`` backups of each database (None: BACKUP_KEEP).

    The newest backup of a database's current migration state is never deleted when it is
    the only one left of that state: it is what a restore would need. Pruning deletes, so
    the production guard applies.
    """
    if keep is None:
        keep = get_settings().backup_keep
    if keep < 0:
        raise InvalidRequest("--keep must be 0 or more.")
    report = PruneReport()
    by_database: dict[str, list[Manifest]] = {}
    for manifest in list_backups(database):
        by_database.setdefault(manifest.database, []).append(manifest)
    store = backup_store()
    for alias, manifests in by_database.items():
        if alias not in connections:
            logger.warning("Not pruning backups of %r: no such database is configured", alias)
            report.kept += [m.id for m in manifests]
            continue
        doomed, protected = _doomed(alias, manifests, keep)
        report.protected += [m.id for m in protected]
        report.kept += [m.id for m in manifests if m not in doomed]
        if doomed:
            guard.require_confirmation(
                connections[alias],
                question=f"Delete {len(doomed)} backup(s) of {alias!r} in "
                f"{get_settings().environment}?",
                assume_yes=assume_yes,
                confirm=confirm,
                command="backup",
                arguments={"prune": True, "keep": keep},
            )
        for manifest in doomed:
            store.delete(manifest.id, manifest.payload)
            report.deleted.append(manifest.id)
            logger.info("Pruned backup %s", manifest.id)
    return report


def _doomed(alias: str, manifests: list[Manifest], keep: int) -> tuple[list[Manifest], list]:
    connection = connections[alias]
    connect(connection)
    recorder = MigrationRecorder(connection)
    current = frozenset(recorder.applied_migrations()) if recorder.has_table() else frozenset()
    kept, doomed = manifests[:keep], manifests[keep:]
    of_current = [m for m in manifests if m.applied == current]
    protected = []
    if of_current and not any(m in kept for m in of_current):
        protected = [of_current[0]]  # the newest backup of the state the database is in
        doomed = [m for m in doomed if m is not of_current[0]]
    return doomed, protected


def human_size(size: int) -> str:
    """'1.2 MB', for messages and listings."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
