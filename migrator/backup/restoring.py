"""Restoring a backup, the mechanism: does it fit, the safety backup, the payload, the audit.

The flow around it (guard, run lock, run record) is ``migrator.restore.restore_backup``.
A restore is atomic: the engine restores the data and merges the live audit back in one
transaction, so a failure leaves the data as it was.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator.backup import encryption, keepaudit
from migrator.backup.backups import check_local_payload, create_backup
from migrator.backup.base import BackupEngine, Statement
from migrator.backup.manifest import (
    Manifest,
    database_identity,
    disk_migrations,
    state_differences,
)
from migrator.exceptions import BackupFailed, MigratorError, RunInterrupted
from migrator.models import Run
from migrator.types import ProgressCallback, ProgressEvent

logger = logging.getLogger(__name__)


@dataclass
class RestoreReport:
    """What a restore did; ``as_dict()`` is the ``restore --json`` document."""

    backup_id: str
    database: str
    format: str
    created: str
    outcome: str = "succeeded"
    safety_backup_id: str | None = None
    replaced_database: str | None = None  # kept for an undo by hand (a parallel restore)
    run_id: int | None = None
    duration: float = 0.0
    forced: bool = False
    differences: list[str] = field(default_factory=list)  # overridden by --force
    encrypted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "database": self.database,
            "format": self.format,
            "created": self.created,
            "outcome": self.outcome,
            "safety_backup_id": self.safety_backup_id,
            "replaced_database": self.replaced_database,
            "run_id": self.run_id,
            "duration": round(self.duration, 3),
            "forced": self.forced,
            "differences": self.differences,
            "encrypted": self.encrypted,
        }


def check_fits(manifest: Manifest, connection: BaseDatabaseWrapper, *, force: bool) -> list[str]:
    """Refuse another vendor's native backup, and unless forced, another database's backup
    or one the files don't fit; return what --force overrode."""
    if manifest.format == "native" and manifest.vendor != connection.vendor:
        raise BackupFailed(
            f"Backup {manifest.id!r} is a native {manifest.vendor} backup; it cannot be "
            f"restored into the {connection.vendor} database {connection.alias!r}. Take a "
            "portable backup (--format portable) to move data across vendors."
        )
    identity = database_identity(connection)
    whose = (
        []
        if manifest.belongs_to(identity)
        else [
            f"backup {manifest.id!r} is of {manifest.identity.describe()}, not of "
            f"{identity.describe()}"
        ]
    )
    if whose and not force:
        raise BackupFailed(
            f"Backup {manifest.id!r} belongs to another database: {whose[0]}. Pass --force "
            f"to replace {connection.alias!r} with it anyway; nothing was changed."
        )
    differences = state_differences(manifest, disk_migrations())
    if differences and not force:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise BackupFailed(
            f"Backup {manifest.id!r} does not fit the migration files on disk: "
            f"{differences[0]}{more}. Check out the code it was taken with, or pass --force."
        )
    return whose + differences


def restore_payload(
    manifest: Manifest,
    engine: BackupEngine,
    connection: BaseDatabaseWrapper,
    run: Run,
    report: RestoreReport,
    progress: ProgressCallback,
    *,
    safety_backup: bool,
    local: Path,
    identities: Sequence[Any] = (),
) -> list[Statement]:
    """Under the lock, with the run open: safety backup, then the restore itself.

    ``local``: the payload made local and checked (``backups.verified_payload``);
    ``identities``: the age identities that decrypt it, if it is encrypted. Returns the
    statements that put the live audit back, still to run once migrator's tables exist
    again (a native backup without them), else an empty list.
    """
    if safety_backup:
        report.safety_backup_id = _safety_backup(connection, run, progress, manifest.format)
    audit_rows = keepaudit.snapshot(connection)
    merge = keepaudit.merge_statements(connection, audit_rows)
    merged_inside = manifest.holds_audit
    progress(ProgressEvent("restore_start", message=f"Restoring {manifest.id}..."))
    with opened_payload(local, identities) as payload:
        report.replaced_database = engine.restore(
            payload, manifest, keep_audit=merge if merged_inside else [], progress=progress
        )
    _forget_cached_rows()
    return [] if merged_inside else list(merge)


@contextmanager
def begun_ahead(
    manifest: Manifest,
    engine: BackupEngine,
    local: Path,
    identities: Sequence[Any],
    progress: ProgressCallback,
    *,
    checksum: bool = False,
) -> Iterator[None]:
    """The engine's restore begun from the local payload before the run lock, where that
    touches nothing ``restore`` does not swap in later (``BackupEngine.restoring_ahead``);
    an encrypted payload is decrypted under the lock instead.

    ``checksum``: the payload is hashed here too (not yet checked), once ``pg_restore`` has
    started on it: its first steps are serial, so the hash takes the other core, not the
    new database's creation's time. A damaged payload is refused before the body runs,
    the new database dropped.
    """
    if identities:
        yield
        return
    with ExitStack() as begun:
        try:
            begun.enter_context(engine.restoring_ahead(local, manifest, progress))
        except Exception:
            if checksum:  # a damaged payload is the reason, whatever else failed
                check_local_payload(manifest, local)
            raise
        if checksum:
            check_local_payload(manifest, local)
        yield


@contextmanager
def opened_payload(local: Path, identities: Sequence[Any]) -> Iterator[Path]:
    """The local payload to read in plaintext: itself, or a FIFO decrypting it.

    A payload deleted since it was checked (a ``backup --prune`` meanwhile) is BackupFailed.
    """
    try:
        if not identities:
            yield local
            return
        with encryption.decrypting(local, list(identities)) as plaintext:
            yield plaintext
    except FileNotFoundError as exc:
        if exc.filename not in {str(local), local}:
            raise
        raise BackupFailed(
            f"The payload {local.name} was deleted while it was being read (a backup --prune "
            "at the same time?); nothing was changed."
        ) from exc


def _safety_backup(connection, run: Run, progress, format: str) -> str:
    """A backup of what is about to be replaced, in the format being restored (whose tools
    are known to be there: a portable restore may be the way in because pg_dump is not)."""
    try:
        safety = create_backup(
            connection.alias, format=format, reason="pre-restore", run=run, progress=progress
        )
    except RunInterrupted:  # SIGTERM: the run is interrupted, not the backup failed
        raise
    except MigratorError as exc:
        raise BackupFailed(
            f"The safety backup failed, so nothing was restored: {exc} "
            "(--no-safety-backup skips it)."
        ) from exc
    run.backup_id = safety.id
    run.save(update_fields=["backup_id"])
    return safety.id


def merge_audit(connection: BaseDatabaseWrapper, merge: Sequence[Statement]) -> None:
    """Put the live audit back after a restore whose payload lacked migrator's tables."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for sql, params in merge:
            cursor.execute(sql, params or None)


def _forget_cached_rows() -> None:
    """Row caches of this process that a restore made stale."""
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()
