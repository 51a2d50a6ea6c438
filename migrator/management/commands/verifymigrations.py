"""``verifymigrations``: are the applied migrations' files unchanged, present and consistent?"""

from typing import Any

from django.core.management.base import CommandParser
from django.db import connections

from migrator import integrity, runner
from migrator.exceptions import IntegrityViolation, InvalidRequest
from migrator.integrity import IntegrityReport, Problem, Recorded
from migrator.management.base import MigratorCommand

HEADINGS = {
    integrity.CHANGED: "Changed after they were applied",
    integrity.MISSING: "Applied, but the file is missing",
    integrity.CONFLICT: "Conflicts (several leaf nodes in one app)",
    integrity.INCONSISTENT: "Inconsistent history",
    integrity.MODEL_CHANGES: "Model changes without a migration",
    integrity.UNVERIFIED: "Unverified (applied without a recorded hash)",
}


class Command(MigratorCommand):
    help = (
        "Check that applied migrations' files are unchanged and present, that there are no "
        "conflicts, inconsistent history or model changes without a migration. Exit 2 on errors."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--baseline",
            action="store_true",
            help="Record hashes for applied migrations that have none (adopting a database).",
        )
        action.add_argument(
            "--accept",
            metavar="APP_LABEL.MIGRATION_NAME",
            help="Record the current hash of a deliberately edited applied migration.",
        )
        parser.add_argument(
            "--reason", metavar="TEXT", help="Why the file was edited (required with --accept)."
        )

    def run(self, **options: Any) -> None:
        database = options["database"]
        if options["reason"] is not None and not options["accept"]:
            raise InvalidRequest("--reason goes with --accept app_label.migration_name.")
        arguments = {key: options[key] for key in ("baseline", "accept", "reason") if options[key]}
        recorded = None
        if options["accept"]:
            recorded = runner.accept(
                database, options["accept"], reason=options["reason"] or "", arguments=arguments
            )
        elif options["baseline"]:
            recorded = runner.baseline(database, arguments=arguments)
        connection = connections[database]
        report = integrity.verify(connection, integrity.load(connection))
        error = None
        if report.errors:
            where = "the document's problems say" if self.as_json else "see above for"
            error = IntegrityViolation(
                f"{len(report.errors)} integrity error(s) on {database!r}; {where} what to do "
                "about each."
            )
        if self.as_json:
            document = report.as_dict()
            if recorded is not None:
                document["accepted" if options["accept"] else "baseline"] = recorded.as_dict()
            self.write_document(document, error)
            return
        if recorded is not None:
            self.render_recorded(recorded, database, accepting=bool(options["accept"]))
        self.render(report)
        if error is not None:
            raise error

    def render_recorded(self, recorded: Recorded, database: str, *, accepting: bool) -> None:
        if accepting and recorded.run_id is None:
            self.stdout.write(
                f"The file already matches its recorded hash ({integrity.short(recorded.new_hash)})"
                "; nothing was recorded."
            )
        elif accepting:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Accepted {recorded.migrations[0]}: {integrity.short(recorded.old_hash)} -> "
                    f"{integrity.short(recorded.new_hash)} (run #{recorded.run_id})."
                )
            )
        elif recorded.run_id is None:
            self.stdout.write(f"Every applied migration on {database!r} already has a hash.")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Recorded the hashes of {len(recorded.migrations)} applied migration(s) "
                    f"on {database!r} (run #{recorded.run_id})."
                )
            )

    def render(self, report: IntegrityReport) -> None:
        if not report.problems:
            self.stdout.write(
                self.style.SUCCESS(
                    f"No integrity problems on {report.database!r} "
                    f"({report.checked} applied migration(s) checked)."
                )
            )
            return
        self.stdout.write(
            self.style.MIGRATE_HEADING(
                f"Integrity of {report.database!r}: {len(report.errors)} error(s), "
                f"{len(report.warnings)} warning(s) ({report.checked} applied migration(s) "
                "checked)."
            )
        )
        for kind in integrity.KINDS:
            problems = report.of_kind(kind)
            if problems:
                self.render_group(kind, problems)

    def render_group(self, kind: str, problems: list[Problem]) -> None:
        """A heading, each problem, and what to do: once when it is the same for all."""
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_LABEL(f"{HEADINGS[kind]} ({len(problems)}):"))
        shared = len({problem.hint for problem in problems}) == 1
        for problem in problems:
            style = self.style.ERROR if problem.is_error else self.style.WARNING
            self.stdout.write(style(f"  [{problem.check_id}] {problem.message}"))
            if not shared:
                self.stdout.write(f"    To do: {problem.hint}")
        if shared:
            self.stdout.write(f"  To do: {problems[0].hint}")
