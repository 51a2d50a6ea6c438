"""``migrationstatus``: one screen per database, and a deploy gate with ``--check``."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from migrator import status as status_module
from migrator.management.base import MigratorCommand
from migrator.status import DatabaseStatus, describe_drill
from migrator.types import Stage


class Command(MigratorCommand):
    help = (
        "Show environment, applied and pending migrations, integrity, lock holder, last run. "
        "With --check, exit non-zero when anything is pending (1) or wrong (2)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 when migrations are pending or running, 2 when history is wrong.",
        )
        parser.add_argument(
            "--stage",
            choices=["before-deploy", "after-deploy"],
            default=None,
            help="With --check: before-deploy exits 1 only when before_deploy migrations are "
            "pending or held back behind after_deploy ones, or a run other than an after-deploy "
            "one is in progress (a gate before switching traffic to new code); after-deploy: any.",
        )

    def run(self, **options: Any) -> None:
        if options["stage"] and not options["check"]:
            raise CommandError("--stage goes with --check.")
        status = status_module.database_status(options["database"])
        stage = options["stage"] and Stage(options["stage"].replace("-", "_"))
        error = status.not_ready(stage) if options["check"] else None
        if self.as_json:
            self.write_document(status.as_dict(), error)
            return
        self.render(status)
        self.render_batches(status.batches_in_flight)
        if error is not None:
            raise error

    def render_batches(self, batches: list[dict[str, Any]]) -> None:
        """Batched data migrations started and not finished (running, or killed half-way)."""
        for batch in batches:
            done, total = batch["rows_done"], batch["rows_estimated"]
            rows = f"{done:,} rows"
            if total:
                rows = f"{done:,}/{total:,} rows ({min(100, 100 * done // total)}%)"
            self.stdout.write(
                self.style.NOTICE(
                    f"  batches: {batch['migration']}: {rows}, {batch['direction']}, "
                    f"last batch committed at {batch['updated_at']}"
                )
            )

    def render_pending(self, status: DatabaseStatus) -> None:
        """Pending migrations in apply order, each with its deploy stage."""
        if not status.pending:
            self.stdout.write(self.style.SUCCESS("  pending: none"))
            return
        stage_of = {
            label: stage for stage, labels in status.pending_by_stage.items() for label in labels
        }
        held = {item.label: item.reason for item in status.held_back}
        self.stdout.write(self.style.WARNING(f"  pending: {len(status.pending)} migration(s)"))
        for label in status.pending:
            stage = stage_of[label]
            if stage is Stage.BEFORE_DEPLOY and label in held:  # a stage-ordering mistake
                self.stdout.write(
                    self.style.ERROR(f"    {label} [{stage}, held back: {held[label]}]")
                )
            else:
                self.stdout.write(f"    {label} [{stage}]")

    def render(self, status: DatabaseStatus) -> None:
        write = self.stdout.write
        write(self.style.MIGRATE_HEADING(f"Database {status.database!r} ({status.vendor})"))
        write(f"  environment: {status.environment}")
        write(f"  applied: {status.applied} migration(s) (a squash counts once, as in the plan)")
        self.render_pending(status)
        for problem in status.problems:
            write(self.style.ERROR(f"  problem: {problem}"))
        for warning in status.warnings:
            write(self.style.WARNING(f"  warning: {warning}"))
        if not status.problems and not status.warnings:
            write(self.style.SUCCESS("  integrity: every applied migration matches its file"))
        holder = status.lock_holder
        if holder:
            write(
                self.style.NOTICE(
                    f"  lock held by {holder['host']} pid {holder['pid']} since {holder['since']}"
                )
            )
        else:
            write("  lock: free")
        for run in status.in_progress:
            write(
                self.style.NOTICE(
                    f"  in progress: {run['command']} #{run['id']} by {run['actor']}@{run['host']} "
                    f"pid {run['pid']} since {run['started_at']}"
                )
            )
        last = status.last_run
        if last:
            write(
                f"  last run: {last['command']} #{last['id']} {last['outcome']} "
                f"at {last['started_at']} by {last['actor']}"
                + (f", backup {last['backup_id']}" if last["backup_id"] else "")
            )
        else:
            write("  last run: none recorded")
        backup = status.latest_backup
        if status.backup_store_error:
            write(self.style.WARNING(f"  latest backup: unknown: {status.backup_store_error}"))
        elif backup:
            encrypted = "encrypted (age)" if backup["encryption"] else "not encrypted"
            write(
                f"  latest backup: {backup['id']} ({backup['reason']}, {backup['created']}, "
                f"{encrypted}, {describe_drill(backup['last_drill'])})"
            )
        else:
            write("  latest backup: none")
