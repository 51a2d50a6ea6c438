"""Backups and restores: native (pg_dump, SQLite's backup API) or portable (Django serializers).

The public API; the ``backup`` command and ``safemigrate`` call only this:

    manifest = create_backup("default", format="native", label="before the big one")
    migrator.restore.restore_backup(manifest.id, database="default", assume_yes=True)

Modules: ``manifest`` (what a backup holds, sealed), ``storage`` (where it lives),
``postgres``/``sqlite``/``portable`` (one per format), ``keepaudit`` (the run audit across
a restore), ``backups`` and ``restoring`` (the operations; the restore flow, with its guard, lock
and run record, is ``migrator.restore``).
"""

from migrator.backup.backups import (
    BackupListing,
    PruneReport,
    create_backup,
    get_manifest,
    human_size,
    list_backups,
    prune_backups,
    scan_backups,
    verify_backup,
)
from migrator.backup.drill import DrillReport, drill_backup, last_drill
from migrator.backup.manifest import Manifest
from migrator.backup.restoring import RestoreReport
from migrator.exceptions import BackupFailed

__all__ = [
    "BackupFailed",
    "BackupListing",
    "DrillReport",
    "Manifest",
    "PruneReport",
    "RestoreReport",
    "create_backup",
    "drill_backup",
    "get_manifest",
    "human_size",
    "last_drill",
    "list_backups",
    "prune_backups",
    "scan_backups",
    "verify_backup",
]
