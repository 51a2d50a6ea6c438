"""``restore ID``: put a backup back into a database, checked, guarded and atomic."""

from typing import Any

from django.core.management.base import CommandParser

from migrator import restore
from migrator.backup import RestoreReport
from migrator.exceptions import BackupFailed
from migrator.management.base import MigratorCommand


class Command(MigratorCommand):
    help = (
        "Restore a backup into --database: verifies it first, takes a safety backup, "
        "restores atomically and keeps the run audit."
    )
    prompts = True
    locks = True
    unreachable_code = interrupted_code = BackupFailed.exit_code

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "backup_id", metavar="ID", help="The backup to restore (backup --list)."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Restore even a backup of another database (vendor, host, port, name), or one "
            "whose migration state differs from the files on disk.",
        )
        parser.add_argument(
            "--no-safety-backup",
            action="store_false",
            dest="safety_backup",
            help="Do not back up the database before replacing it.",
        )
        parser.add_argument(
            "--identity",
            metavar="FILE",
            help="age identity file that decrypts an encrypted backup (default: "
            "MIGRATOR['BACKUP_IDENTITY_FILE'], else $MIGRATOR_BACKUP_IDENTITY_FILE).",
        )

    def run(self, backup_id: str, **options: Any) -> None:
        report = restore.restore_backup(
            backup_id,
            database=options["database"],
            force=options["force"],
            safety_backup=options["safety_backup"],
            assume_yes=options["assume_yes"],
            confirm=self.confirm_callback(options),
            progress=self.show_progress if self.verbosity >= 2 else _quiet,
            identity=options["identity"],
            lock_timeout=options["lock_timeout"],
        )
        self.warn_unneeded_identity(options["identity"], report.backup_id, report.encrypted)
        if self.as_json:
            self.write_json(report.as_dict())
        else:
            self.render(report)

    def render(self, report: RestoreReport) -> None:
        if self.verbosity < 1:
            return
        for difference in report.differences:
            self.stdout.write(self.style.WARNING(f"Forced: {difference}"))
        safety = f" Safety backup: {report.safety_backup_id}." if report.safety_backup_id else ""
        if report.replaced_database:
            safety += (
                f" The database it replaced is kept as {report.replaced_database} until the "
                "next such restore."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored backup {report.backup_id} into {report.database!r} in "
                f"{report.duration:.1f}s (run #{report.run_id}).{safety}"
            )
        )


def _quiet(event: Any) -> None:
    """Progress is shown only from verbosity 2."""
