"""``rollback``: undo migrations after validating what undoing costs."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from migrator import rollback
from migrator.exceptions import MigratorError
from migrator.management.base import MigratorCommand
from migrator.risks import LabelledFinding
from migrator.rollback import RollbackReport
from migrator.types import ProgressEvent


class Command(MigratorCommand):
    help = (
        "Unapply migrations down to a target, or undo the last safemigrate run (--last), "
        "after checking that every step can be reversed and reporting the data it destroys."
    )
    prompts = True
    changes = True

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("app_label", nargs="?", help="App label of the app to roll back.")
        parser.add_argument(
            "migration_name",
            nargs="?",
            help="Roll back to this migration (it stays applied); 'zero' unapplies them all.",
        )
        parser.add_argument(
            "--last",
            action="store_true",
            help="Undo every migration the last safemigrate run applied, whatever its outcome.",
        )
        parser.add_argument(
            "--restore",
            action="store_true",
            help="With --last: restore the backup that run took first, instead of reversing.",
        )
        parser.add_argument(
            "--plan",
            action="store_true",
            help="Show the plan, its problems and the data it destroys; change nothing.",
        )
        parser.add_argument(
            "--sql",
            action="store_true",
            help="Print the SQL of the backward plan, naming steps without SQL; change nothing.",
        )
        parser.add_argument(
            "--no-backup",
            action="store_false",
            dest="backup",
            default=None,
            help="Skip the backup before rolling back (MIGRATOR['BACKUP_BEFORE_ROLLBACK']).",
        )

    def run(self, app_label: str | None, migration_name: str | None, **options: Any) -> None:
        request = {
            "app_label": app_label,
            "migration_name": migration_name,
            "last": options["last"],
            "restore": options["restore"],
        }
        if options["sql"]:
            if options["restore"]:
                raise CommandError("--sql shows the reverse operations; --restore runs none.")
            steps = rollback.plan_sql(
                app_label, migration_name, last=options["last"], database=options["database"]
            )
            self.render_sql(steps, nothing="-- Nothing to roll back.")
            return
        try:
            if options["plan"]:
                report = rollback.plan_rollback(**request, database=options["database"])
            else:
                report = rollback.rollback(
                    **request,
                    options=self.run_options(options, request),
                    progress=self.show_progress,
                    confirm=self.confirm_callback(options),
                )
        except MigratorError as exc:
            report = getattr(exc, "report", None)
            if report is not None and not self.as_json:  # --json: the base command writes it
                self.output(report)
            raise
        refusal = report.refusal()
        if refusal is None or not self.as_json:  # --json: the base command writes the report
            self.output(report)
        if refusal is not None:  # --plan: the plan is shown, and the exit code says no
            raise refusal

    def output(self, report: RollbackReport) -> None:
        if self.as_json:
            self.write_json(report.as_dict())
        elif report.outcome in {"planned", "refused"}:
            self.render_plan(report)
        else:
            self.render_result(report)

    def render_plan(self, report: RollbackReport) -> None:
        write, style = self.stdout.write, self.style
        how = "restore a backup" if report.mode == "restore" else "unapply"
        write(
            style.MIGRATE_HEADING(
                f"Rollback {report.target} on {report.database!r} ({report.environment}): "
                f"{how}, {len(report.plan)} migration(s)"
            )
        )
        if report.source_run_id is not None:
            write(
                f"  Undoes safemigrate run #{report.source_run_id} ({report.source_run_outcome})."
            )
        if report.restore_backup_id:
            write(f"  Restores backup {report.restore_backup_id}.")
        if not report.plan:
            write("  Nothing to roll back.")
        if report.mode == "restore" and not report.restore_backup_id:
            return  # no backup to restore (the refusal says so): no step would run
        self.write_plan(report.plan)
        if report.fake:
            write(f"Unapplied as fake (the run only recorded them): {', '.join(report.fake)}.")
        self.render_findings("Data the rollback destroys:", report.data_loss, style.WARNING)
        self.render_findings("What it cannot bring back:", report.not_restored, style.NOTICE)
        for warning in report.warnings:
            write(style.WARNING(f"Warning: {warning}"))
        if report.outcome == "planned":
            write("Validation passed; nothing was changed.")

    def show_progress(self, event: ProgressEvent) -> None:
        """Library events; what the rollback destroys is shown before it runs, as in --plan."""
        if event.action != "rollback_losses":
            super().show_progress(event)
        elif self.verbosity >= 1:
            out, style = self.progress_out, self.style
            self.render_findings(
                "Data the rollback destroys:", event.data["data_loss"], style.WARNING, out
            )
            self.render_findings(
                "What it cannot bring back:", event.data["not_restored"], style.NOTICE, out
            )

    def render_findings(
        self, heading: str, findings: list[LabelledFinding], role, out: Any = None
    ) -> None:
        if not findings:
            return
        out = out or self.stdout
        out.write(role(heading))
        for item in findings:
            finding = item.finding
            what = finding.describe_loss() if finding.table else finding.message
            where = f"{item.migration}: " if item.migration else ""
            out.write(f"  - {where}{what}")

    def render_result(self, report: RollbackReport) -> None:
        if report.outcome == "nothing":
            if self.verbosity >= 1:
                self.stdout.write("Nothing to roll back.")
            return
        if self.verbosity < 1 or report.outcome != "succeeded":
            return  # a failure's message (stderr) says what was unapplied and what remains
        backup = f", backup {report.backup_id}" if report.backup_id else ""
        if report.mode == "restore":
            self.stdout.write(
                self.style.SUCCESS(
                    f"Restored backup {report.restore_backup_id} into {report.database!r}, "
                    f"undoing run #{report.source_run_id} (run #{report.run_id}{backup})."
                )
            )
            return
        total = sum(step.duration or 0 for step in report.steps)
        self.stdout.write(
            self.style.SUCCESS(
                f"Unapplied {len(report.unapplied)} migration(s) from {report.database!r} "
                f"in {total:.2f}s (run #{report.run_id}{backup})."
            )
        )
