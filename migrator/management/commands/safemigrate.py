"""``safemigrate``: ``migrate`` with a lock, an audit record, hashes and a production guard."""

from dataclasses import replace
from typing import Any

from django.core.management.base import CommandParser
from django.db import connections

from migrator import guard, runner
from migrator.exceptions import MigratorError, UnappliedMigrations
from migrator.management.base import MigratorCommand
from migrator.types import RunReport, Stage


class Command(MigratorCommand):
    help = "Apply migrations safely: integrity check, production guard, lock, audit."
    prompts = True
    changes = True

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("app_label", nargs="?", help="App label of an application to migrate.")
        parser.add_argument(
            "migration_name", nargs="?", help="Migrate up to this migration of the app."
        )
        views = parser.add_mutually_exclusive_group()
        views.add_argument(
            "--plan", action="store_true", help="Show the plan and its risks; change nothing."
        )
        views.add_argument(
            "--sql", action="store_true", help="Print the SQL the plan would run; change nothing."
        )
        parser.add_argument(
            "--fake", action="store_true", help="Record migrations as applied without running them."
        )
        parser.add_argument(
            "--fake-initial",
            action="store_true",
            help="As migrate: fake-apply initial migrations whose tables already exist.",
        )
        parser.add_argument(
            "--run-syncdb",
            action="store_true",
            help="As migrate: create the tables of apps without migrations.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            dest="check_unapplied",
            help="As migrate: exit 1 when migrations are unapplied; apply nothing.",
        )
        views.add_argument(  # it changes the database: not with --plan or --sql
            "--prune",
            action="store_true",
            help="As migrate: forget the app's applied migrations whose files are gone "
            "(then, with --check, exit 1 when migrations are unapplied).",
        )
        parser.add_argument(
            "--stage",
            choices=["before-deploy", "after-deploy"],
            default=None,
            help="before-deploy: only pending before_deploy migrations that depend on no "
            "after_deploy one (the rest is named, not applied); after-deploy: everything.",
        )
        backup_flags = parser.add_mutually_exclusive_group()
        backup_flags.add_argument(
            "--backup",
            action="store_true",
            default=None,
            help="Back up the database before applying (default: MIGRATOR['BACKUP_BEFORE_MIGRATE'],"
            " which is on in production).",
        )
        backup_flags.add_argument(
            "--no-backup", action="store_false", dest="backup", help="Do not back up first."
        )

    def run(self, app_label: str | None, migration_name: str | None, **options: Any) -> None:
        target = {"app_label": app_label, "migration_name": migration_name}
        stage = options["stage"] and Stage(options["stage"].replace("-", "_"))
        if options["sql"]:
            steps = runner.plan_sql(**target, database=options["database"], stage=stage)
            self.render_sql(steps, nothing="-- No migrations to apply.")
            return
        if options["prune"]:
            self.prune(target, stage, options)
            return
        if options["plan"] or options["check_unapplied"]:
            report = runner.plan_report(**target, database=options["database"], stage=stage)
            if options["check_unapplied"] and not options["plan"]:
                self.check_unapplied(report)
                return
        else:
            flags = ("fake", "fake_initial", "run_syncdb", "stage")
            report = runner.safemigrate(
                **target,
                options=replace(self.run_options(options, target, *flags), stage=stage),
                progress=self.show_progress,
                confirm=self.confirm_callback(options),
            )
        if options["plan"]:  # a CI gate on MIGRATOR["BLOCKING_RISKS"], the plan shown
            try:
                guard.refuse_blocking_risks(
                    connections[options["database"]], report.plan, record=False
                )
            except MigratorError as exc:
                if not self.as_json:
                    self.render(report)
                exc.report = report  # type: ignore[attr-defined]  # the --json document's plan
                raise
        if self.as_json:
            self.write_json(report.as_dict())
        else:
            self.render(report)
        if options["check_unapplied"]:
            self.check_unapplied(report)

    def prune(self, target: dict[str, Any], stage: Stage | None, options: dict[str, Any]) -> None:
        """``--prune``; with ``--check``, as ``migrate``, the check comes after the pruning."""
        pruned = runner.prune(
            target["app_label"],
            options=self.run_options(options, target),
            progress=self.show_progress,
            confirm=self.confirm_callback(options),
        )
        unapplied = None
        if options["check_unapplied"]:
            report = runner.plan_report(**target, database=options["database"], stage=stage)
            unapplied = self.unapplied(report)
        self.render_pruned(pruned, unapplied)

    def check_unapplied(self, report: RunReport) -> None:
        """``--check``: exit 1 when migrations are waiting, as ``migrate --check``."""
        if (error := self.unapplied(report)) is not None:
            raise error

    def unapplied(self, report: RunReport) -> UnappliedMigrations | None:
        if report.plan:
            return UnappliedMigrations(
                f"{len(report.plan)} migration(s) not applied to {report.database!r}."
            )
        return None

    def render_pruned(self, pruned: list[str], unapplied: UnappliedMigrations | None) -> None:
        """What was pruned; then ``--check``'s failure, if any (in the ``--json`` document)."""
        if self.as_json:
            self.write_document({"pruned": pruned}, unapplied)
            return
        if self.verbosity >= 1:
            self.write_pruned(pruned)
        if unapplied is not None:
            raise unapplied

    def write_pruned(self, pruned: list[str]) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING("Pruning migrations:"))
        for label in pruned:
            self.stdout.write(
                self.style.MIGRATE_LABEL(f"  Pruning {label}") + self.style.SUCCESS(" OK")
            )
        if not pruned:
            self.stdout.write("  No migrations to prune.")

    def render(self, report: RunReport) -> None:
        if report.outcome == "planned":
            self.stdout.write(self.style.MIGRATE_HEADING("Planned operations:"))
            if not report.plan:
                self.stdout.write("  No planned migration operations.")
            self.write_plan(report.plan)
            self.write_held_back(report)
            return
        if report.outcome == "nothing":
            if self.verbosity >= 1:
                self.stdout.write("No migrations to apply.")
            return
        if self.verbosity >= 1:
            total = sum(step.duration or 0 for step in report.steps)
            own = len(report.own_first)
            if report.steps and all(step.fake for step in report.steps):  # --fake
                done = f"Faked {len(report.steps)} migration(s)"
                done += f" (applied migrator's own {own} first)" if own else ""
            else:  # as many as the "Applying" lines
                done = f"Applied {len(report.steps) + own} migration(s)"
                done += f", {own} of them migrator's own," if own else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"{done} to {report.database!r} in {total:.2f}s (run #{report.run_id})."
                )
            )

    def write_held_back(self, report: RunReport) -> None:
        if report.held_back:
            self.stdout.write(self.style.MIGRATE_HEADING("Held back until after the deploy:"))
        for held in report.held_back:
            self.stdout.write(f"  {held.label}: {held.reason}")
