"""Restoring a backup: checked first, guarded, locked, recorded, atomic.

Order: the manifest's seal and the payload's checksum -> vendor and migration state
against the files on disk -> the server is reachable and the tools fit -> production
guard -> run lock -> the restore's own run record -> safety backup -> the live audit is
read -> the engine restores and merges the audit back, in one transaction -> the run is
closed. Nothing touches the database before the guard, and a failure after it leaves the
data as it was (the restore's run record then says it failed).
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from migrator import audit, guard
from migrator.backup import keepaudit
from migrator.backup.backups import check_digest, create_backup, verify_backup
from migrator.backup.base import connect, engine_for
from migrator.backup.manifest import Manifest, disk_migrations, state_differences
from migrator.backup.storage import DirectoryStore, backup_store, file_digest
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed, MigratorError
from migrator.models import Run
from migrator.types import ConfirmCallback, ProgressCallback, ProgressEvent, ignore_progress

logger = logging.getLogger(__name__)

MIGRATOR_APP = "migrator"


@dataclass
class RestoreReport:
    """What a restore did; ``as_dict()`` is the ``restore --json`` document."""

    backup_id: str
    database: str
    format: str
    created: str
    outcome: str = "succeeded"
    safety_backup_id: str | None = None
    run_id: int | None = None
    duration: float = 0.0
    forced: bool = False
    differences: list[str] = field(default_factory=list)  # overridden by --force

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "database": self.database,
            "format": self.format,
            "created": self.created,
            "outcome": self.outcome,
            "safety_backup_id": self.safety_backup_id,
            "run_id": self.run_id,
            "duration": round(self.duration, 3),
            "forced": self.forced,
            "differences": self.differences,
        }


def restore_backup(
    backup_id: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    force: bool = False,
    safety_backup: bool = True,
    assume_yes: bool = False,
    confirm: ConfirmCallback | None = None,
    progress: ProgressCallback = ignore_progress,
    lock_timeout: float | None = None,
) -> RestoreReport:
    """Replace a database's contents with a backup, all or nothing.

    ``lock_timeout``: seconds to wait for another run's lock (None: the setting).
    """
    from migrator.runner import RunOptions, locked  # runner imports this package

    started = time.monotonic()
    manifest = verify_backup(backup_id)
    connection = connections[database]
    differences = _check_fits(manifest, connection, force=force)
    arguments = {"backup_id": manifest.id, "force": force, "safety_backup": safety_backup}
    engine = engine_for(connection, manifest.format)
    connect(connection)
    engine.check_restore(manifest)
    guard.require_confirmation(
        connection,
        question=(
            f"Replace everything in {database!r} ({get_settings().environment}) with backup "
            f"{manifest.id!r} of {manifest.created}?"
        ),
        assume_yes=assume_yes,
        confirm=confirm,
        command="restore",
        arguments=arguments,
    )
    report = RestoreReport(
        backup_id=manifest.id,
        database=database,
        format=manifest.format,
        created=manifest.created,
        forced=bool(differences),
        differences=differences,
    )
    options = RunOptions(database=database, assume_yes=assume_yes, lock_timeout=lock_timeout)
    with locked(connection, options=options, progress=progress):
        run = audit.open_run(
            connection,
            command="restore",
            arguments=arguments,
            details={"restored_backup": manifest.id, "format": manifest.format},
        )
        report.run_id = run.pk
        try:
            run = _restore_recorded(
                manifest, engine, connection, run, report, progress, safety_backup=safety_backup
            )
        except BaseException as exc:
            outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            report.outcome = outcome
            audit.close_run(run, outcome=outcome, error=str(exc) or type(exc).__name__)
            raise
    report.duration = time.monotonic() - started
    audit.close_run(
        run,
        outcome=Run.Outcome.SUCCEEDED,
        safety_backup_id=report.safety_backup_id,
        forced=report.forced,
    )
    logger.info("Restored backup %s into %r", manifest.id, database)
    return report


def _check_fits(manifest: Manifest, connection, *, force: bool) -> list[str]:
    """Refuse another vendor's native backup, and unless forced, one the files don't fit."""
    if manifest.format == "native" and manifest.vendor != connection.vendor:
        raise BackupFailed(
            f"Backup {manifest.id!r} is a native {manifest.vendor} backup; it cannot be "
            f"restored into the {connection.vendor} database {connection.alias!r}. Take a "
            "portable backup (--format portable) to move data across vendors."
        )
    differences = state_differences(manifest, disk_migrations())
    if differences and not force:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise BackupFailed(
            f"Backup {manifest.id!r} does not fit the migration files on disk: "
            f"{differences[0]}{more}. Check out the code it was taken with, or pass --force."
        )
    return differences


def _restore_recorded(
    manifest, engine, connection, run: Run, report, progress, *, safety_backup: bool
) -> Run:
    """Under the lock, with the run open: safety backup, then the restore itself."""
    if safety_backup:
        report.safety_backup_id = _safety_backup(connection, run, progress, manifest.format)
    store = backup_store()
    audit_rows = keepaudit.snapshot(connection)
    merge = keepaudit.merge_statements(connection, audit_rows)
    # Native payloads hold migrator's tables only when the backed-up database had them.
    merged_inside = manifest.format == "portable" or any(
        app_label == MIGRATOR_APP for app_label, _ in manifest.applied
    )
    progress(ProgressEvent("restore_start", message=f"Restoring {manifest.id}..."))
    with store.local_payload(manifest.payload) as local:
        if not isinstance(store, DirectoryStore):  # a fresh download: check it again
            with local.open("rb") as handle:
                check_digest(manifest, *file_digest(handle))
        engine.restore(
            local, manifest, keep_audit=merge if merged_inside else [], progress=progress
        )
    if not merged_inside:
        _merge_after(connection, merge, progress)
    _forget_cached_rows()
    progress(ProgressEvent("restore_done", message=f"Restored {manifest.id}."))
    return keepaudit.find_run(connection, run)


def _safety_backup(connection, run: Run, progress, format: str) -> str:
    """A backup of what is about to be replaced, in the format being restored (whose tools
    are known to be there: a portable restore may be the way in because pg_dump is not)."""
    try:
        safety = create_backup(
            connection.alias, format=format, reason="pre-restore", run=run, progress=progress
        )
    except MigratorError as exc:
        raise BackupFailed(
            f"The safety backup failed, so nothing was restored: {exc} "
            "(--no-safety-backup skips it)."
        ) from exc
    run.backup_id = safety.id
    run.save(update_fields=["backup_id"])
    return safety.id


def _merge_after(connection, merge, progress) -> None:
    """A native backup without migrator's tables: create them and put the audit back."""
    from migrator.runner import bootstrap

    bootstrap(connection, progress)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for sql, params in merge:
            cursor.execute(sql, params or None)


def _forget_cached_rows() -> None:
    """Row caches of this process that a restore made stale."""
    from django.apps import apps

    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()
