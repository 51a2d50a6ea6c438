"""``backup``: take, list, show, verify and prune backups."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from migrator import backup
from migrator.backup import Manifest
from migrator.exceptions import BackupFailed
from migrator.management.base import MigratorCommand
from migrator.status import describe_drill


class Command(MigratorCommand):
    help = (
        "Back up a database (native: pg_dump / SQLite backup API; portable: Django "
        "serializers), or list, show, verify and prune backups."
    )
    prompts = True  # --prune deletes: the production guard applies
    unreachable_code = interrupted_code = BackupFailed.exit_code

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--format",
            choices=("native", "portable"),
            help="native (default): the vendor's own tool; portable: restorable on any vendor.",
        )
        parser.add_argument("--label", default="", help="A note stored in the manifest.")
        actions = parser.add_mutually_exclusive_group()
        actions.add_argument(
            "--list",
            action="store_true",
            help="List the backups of --database (its vendor, host, port and name, whatever the "
            "alias), newest first.",
        )
        actions.add_argument("--show", metavar="ID", help="Show a backup's manifest.")
        actions.add_argument(
            "--verify", metavar="ID", help="Check a backup's manifest and re-hash its payload."
        )
        actions.add_argument(
            "--prune",
            action="store_true",
            help="Delete all but the newest --keep backups of --database (never the only "
            "backup of its current migration state).",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            dest="all_databases",
            help="With --list: the backups of every database in the store.",
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="With --verify: restore drill: restore into a scratch database, compare each "
            "table's rows with the backup's counts, check the migration state, drop it.",
        )
        parser.add_argument(
            "--identity",
            metavar="FILE",
            help="age identity file for --verify --full of an encrypted backup (default: "
            "MIGRATOR['BACKUP_IDENTITY_FILE'], else $MIGRATOR_BACKUP_IDENTITY_FILE).",
        )
        parser.add_argument(
            "--keep",
            type=int,
            metavar="N",
            help="How many backups --prune keeps (default: MIGRATOR['BACKUP_KEEP'], 10).",
        )

    def refuse_unpaired(self, options: dict[str, Any]) -> None:
        """A flag without the one it goes with would be ignored: refused instead."""
        if options["keep"] is not None and not options["prune"]:
            raise CommandError("--keep goes with --prune.")
        if (options["format"] or options["label"]) and any(
            options[mode] for mode in ("list", "show", "verify", "prune")
        ):
            raise CommandError("--format and --label go with taking a backup.")
        if options["all_databases"] and not options["list"]:
            raise CommandError("--all goes with --list.")
        if (options["full"] or options["identity"]) and not options["verify"]:
            raise CommandError("--full and --identity go with --verify ID.")
        if options["identity"] and not options["full"]:
            raise CommandError(
                "--identity goes with --verify ID --full: only a drill decrypts the backup."
            )

    def run(self, **options: Any) -> None:
        database = options["database"]
        self.refuse_unpaired(options)
        if options["list"]:
            self.render_list(backup.scan_backups(None if options["all_databases"] else database))
        elif options["show"]:
            self.render_manifest(backup.get_manifest(options["show"]))
        elif options["verify"] and options["full"]:
            report = backup.drill_backup(
                options["verify"],
                database=database,
                identity=options["identity"],
                progress=self.show_progress if self.verbosity >= 2 else _quiet,
            )
            self.warn_unneeded_identity(options["identity"], report.backup_id, report.encrypted)
            self.render_drill(report)
        elif options["verify"]:
            self.render_verified(backup.verify_backup(options["verify"]))
        elif options["prune"]:
            self.render_pruned(
                backup.prune_backups(
                    keep=options["keep"],
                    database=database,
                    assume_yes=options["assume_yes"],
                    confirm=self.confirm_callback(options),
                )
            )
        else:
            manifest = backup.create_backup(
                database,
                format=options["format"] or "native",
                label=options["label"],
                progress=self.show_progress if self.verbosity >= 2 else _quiet,
            )
            self.render_created(manifest)

    def render_created(self, manifest: Manifest) -> None:
        if self.as_json:
            self.write_json(manifest.as_dict())
        elif self.verbosity == 0:
            self.stdout.write(manifest.id)
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Backed up {manifest.database!r} to {manifest.id} ({manifest.format}, "
                    f"{backup.human_size(manifest.size)}, {manifest.duration:.1f}s)."
                )
            )

    def render_list(self, listing: backup.BackupListing) -> None:
        manifests = listing.manifests
        drills = {m.id: backup.last_drill(m.id) for m in manifests}
        if self.as_json:
            documents = [{**m.as_dict(), "last_drill": drills[m.id]} for m in manifests]
            unreadable = [{"id": key, "error": why} for key, why in listing.unreadable.items()]
            self.write_json({"backups": documents, "unreadable": unreadable})
            return
        for why in listing.unreadable.values():
            self.stderr.write(self.style.WARNING(f"Left out, unreadable: {why}"))
        if not manifests:
            self.stdout.write("No readable backups." if listing.unreadable else "No backups.")
        for m in manifests:
            label = f"  {m.label}" if m.label else ""
            encrypted = "age" if m.encryption else "-"
            self.stdout.write(
                f"{m.id}  {m.created[:19]}  {m.database:<10}  {m.format:<8}  {m.reason:<12}  "
                f"{backup.human_size(m.size):>9}  {encrypted:<3}  "
                f"{describe_drill(drills[m.id])}{label}"
            )

    def render_manifest(self, manifest: Manifest) -> None:
        if self.as_json:
            self.write_json(manifest.as_dict())
            return
        document = manifest.as_dict()
        migrations = document.pop("migrations")
        for key, value in document.items():
            self.stdout.write(f"{key + ':':<18}{'' if value is None else value}")
        self.stdout.write(f"{'migrations:':<18}{len(migrations)} applied")
        if self.verbosity >= 2:
            for app_label, name, checksum in migrations:
                self.stdout.write(f"  {app_label}.{name}  {checksum}")

    def render_verified(self, manifest: Manifest) -> None:
        if self.as_json:
            self.write_json({"id": manifest.id, "ok": True, "sha256": manifest.sha256})
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Backup {manifest.id} is intact ({backup.human_size(manifest.size)}, "
                    f"sha256 {manifest.sha256[:16]}...)."
                )
            )

    def render_drill(self, report: backup.DrillReport) -> None:
        """Per-table counts, then the verdict; a failed drill exits 6 naming its cause."""
        if self.as_json:
            self.write_json(report.as_dict())
        elif self.verbosity >= 1:
            for row in report.tables:
                same = row["recorded"] == row["restored"]
                recorded, restored = _count(row["recorded"]), _count(row["restored"])
                line = f"  {row['table']:<40} {recorded:>12} {restored:>12}"
                self.stdout.write(line if same else self.style.ERROR(line + "  differs"))
        if not report.passed:
            raise backup.BackupFailed(f"Drill of backup {report.backup_id} failed: {report.cause}")
        if not self.as_json:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Drill of backup {report.backup_id} passed: {len(report.tables)} table(s) "
                    f"restored with the recorded row counts, migration state as recorded; "
                    f"scratch database dropped ({report.duration:.1f}s)."
                )
            )

    def render_pruned(self, report: backup.PruneReport) -> None:
        if self.as_json:
            self.write_json(report.as_dict())
            return
        for backup_id in report.deleted:
            self.stdout.write(f"Deleted {backup_id}")
        for backup_id in report.damaged:
            self.stdout.write(f"Damaged {backup_id}: failed verification, so not kept")
        for backup_id in report.protected:
            self.stdout.write(f"Kept {backup_id}: the only backup of the current migration state")
        for filename in report.orphans:
            self.stdout.write(f"Deleted {filename}: its manifest was gone, so nothing could use it")
        self.stdout.write(f"Pruned {len(report.deleted)} backup(s); {len(report.kept)} kept.")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _quiet(event: Any) -> None:
    """Backup progress is shown only from verbosity 2: the result line says it all."""
