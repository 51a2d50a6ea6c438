"""Restoring a backup, the flow: checked first, guarded, locked, recorded, atomic.

Order: the manifest's seal and the payload's checksum -> vendor and migration state against
the files on disk -> the server is reachable and the tools fit -> production guard -> what
migrator's tables need made (``BackupEngine.prepare_target``: a new database's search_path
schema) -> run lock -> the restore's own run record -> safety backup -> the live audit is
read -> the engine restores and merges the audit back, in one transaction -> the run is
closed. Nothing touches the database before the guard, and a failure after it leaves the
data as it was (the restore's run record then says it failed). An engine may begin its
restore right after the guard where that touches nothing it does not swap in later, under
the lock (the parallel route's new database, ``BackupEngine.restoring_ahead``). Where the
guard asks nobody, the payload's checksum is taken meanwhile, and still before the lock. A
payload in a Django storage is downloaded once, first, and every later read is of that copy.
``rollback --last --restore`` runs the same steps with its own guard, and its own run record
around the restore's under the same lock: ``checked_restore``, then ``restore_checked``.

    report = restore_backup(manifest.id, database="default", assume_yes=True)
"""

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import guard
from migrator.audit import outcome_of, recorded
from migrator.backup import keepaudit, restoring
from migrator.backup.backups import verified_payload
from migrator.backup.base import BackupEngine, connect, engine_for
from migrator.backup.manifest import Manifest
from migrator.conf import get_settings
from migrator.exceptions import RunInterrupted
from migrator.lifecycle import bootstrap, locked
from migrator.types import (
    ConfirmCallback,
    ProgressCallback,
    ProgressEvent,
    RunOptions,
    ignore_progress,
)

logger = logging.getLogger(__name__)


@dataclass
class CheckedRestore:
    """A backup verified and found to fit a database: what ``restore_checked`` restores."""

    manifest: Manifest
    connection: BaseDatabaseWrapper
    engine: BackupEngine
    identities: list[Any]
    local: Path  # the payload made local (a Django storage's downloaded once)
    report: restoring.RestoreReport
    arguments: dict[str, Any]
    started: float  # time.monotonic() before the checks


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
    identity: str | None = None,
) -> restoring.RestoreReport:
    """Replace a database's contents with a backup, all or nothing.

    ``lock_timeout``: seconds to wait for another run's lock (None: the setting).
    ``identity``: an age identity file for an encrypted backup (None: the settings').
    """
    # Unless someone is asked, the payload is hashed once the parallel route's fill has
    # begun (restoring.begun_ahead): a damaged one still touches nothing.
    unasked = guard.goes_ahead_unasked(assume_yes=assume_yes)
    with checked_restore(
        backup_id,
        database=database,
        force=force,
        safety_backup=safety_backup,
        identity=identity,
        checksum=not unasked,
    ) as checked:
        guard.require_confirmation(
            checked.connection,
            question=(
                f"Replace everything in {database!r} ({get_settings().environment}) with "
                f"backup {checked.manifest.id!r} of {checked.manifest.created}?"
            ),
            assume_yes=assume_yes,
            confirm=confirm,
            command="restore",
            arguments=checked.arguments,
        )
        options = RunOptions(database=database, assume_yes=assume_yes, lock_timeout=lock_timeout)
        with begun_ahead(checked, progress, checksum=unasked):
            checked.engine.prepare_target(checked.manifest)
            with locked(checked.connection, options=options, progress=progress):
                return restore_checked(checked, progress)


@contextmanager
def checked_restore(
    backup_id: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    force: bool = False,
    safety_backup: bool = True,
    identity: str | None = None,
    checksum: bool = True,
) -> Iterator[CheckedRestore]:
    """Everything checked before a restore asks or locks anything; changes nothing. The
    payload stays local until the block ends.

    ``checksum=False``: a plaintext payload is left to hash (``begun_ahead``).
    """
    started = time.monotonic()
    with verified_payload(backup_id, identity, checksum=checksum) as (
        manifest,
        identities,
        local,
    ):
        connection = connections[database]
        differences = restoring.check_fits(manifest, connection, force=force)
        engine = engine_for(connection, manifest.format)
        connect(connection)
        engine.check_restore(manifest, partial(restoring.opened_payload, local, identities))
        report = restoring.RestoreReport(
            backup_id=manifest.id,
            database=database,
            format=manifest.format,
            created=manifest.created,
            forced=bool(differences),
            differences=differences,
            encrypted=bool(manifest.encryption),
        )
        arguments = {"backup_id": manifest.id, "force": force, "safety_backup": safety_backup}
        yield CheckedRestore(
            manifest, connection, engine, identities, local, report, arguments, started
        )


def begun_ahead(
    checked: CheckedRestore, progress: ProgressCallback, *, checksum: bool = False
) -> AbstractContextManager[None]:
    """``restoring.begun_ahead`` of a checked restore: the parallel route's fill begun."""
    return restoring.begun_ahead(
        checked.manifest,
        checked.engine,
        checked.local,
        checked.identities,
        progress,
        checksum=checksum,
    )


def restore_checked(
    checked: CheckedRestore, progress: ProgressCallback = ignore_progress
) -> restoring.RestoreReport:
    """The restore itself, recorded as its own run, under the run lock the caller holds."""
    manifest, connection, report = checked.manifest, checked.connection, checked.report
    details = {"restored_backup": manifest.id, "format": manifest.format}
    with recorded(
        connection, command="restore", arguments=checked.arguments, details=details
    ) as run:
        report.run_id = run.pk
        try:
            merge = restoring.restore_payload(
                manifest,
                checked.engine,
                connection,
                run,
                report,
                progress,
                safety_backup=checked.arguments["safety_backup"],
                local=checked.local,
                identities=checked.identities,
            )
            if merge:  # the payload had no migrator tables: create them, put the audit back
                bootstrap(connection, progress)
                restoring.merge_audit(connection, merge)
        except BaseException as exc:
            report.outcome = outcome_of(exc)
            if isinstance(exc, KeyboardInterrupt | RunInterrupted):  # RunInterrupted: SIGTERM
                by = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
                raise RunInterrupted(
                    f"Restore of {manifest.id} into {connection.alias!r} stopped by {by}; the "
                    "run is recorded as interrupted."
                ) from exc
            raise
        progress(ProgressEvent("restore_done", message=f"Restored {manifest.id}."))
        run.pk = report.run_id = keepaudit.find_run(connection, run).pk  # merged back
        run.details.update(safety_backup_id=report.safety_backup_id, forced=report.forced)
    report.duration = time.monotonic() - checked.started
    logger.info("Restored backup %s into %r", manifest.id, report.database)
    return report
