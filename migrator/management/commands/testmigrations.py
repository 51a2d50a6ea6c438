"""``testmigrations``: apply, unapply and re-apply every migration on a throwaway database."""

from typing import Any

from django.core.management.base import CommandParser

from migrator import roundtrip
from migrator.management.base import MigratorCommand
from migrator.roundtrip import RoundTripReport
from migrator.types import ProgressEvent

STATUS_TEXT = {
    roundtrip.OK: "ok",
    roundtrip.DIFFERENCES: "DIFFERENCES",
    roundtrip.IRREVERSIBLE: "irreversible, skipped",
    roundtrip.FAILED: "FAILED",
}


class Command(MigratorCommand):
    help = (
        "On a throwaway test database, apply each migration, unapply it and apply it again, "
        "comparing schema snapshots; report irreversible steps and schema differences. "
        "Exit 2 on a difference, 5 on a failure, 7 with --strict on an irreversible step."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "app_label", nargs="*", help="Only round-trip these apps' migrations (default: all)."
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Fail with exit 7 when a migration is irreversible.",
        )
        parser.add_argument(
            "--since",
            metavar="REF",
            help="Only round-trip migrations whose files 'git diff REF...HEAD' adds.",
        )
        parser.add_argument(
            "--keepdb",
            action="store_true",
            help="Keep the test database afterwards and reuse it if it exists "
            "(migrations already applied in it are not tested again).",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Never prompt: replace an existing test database without asking.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["skip_checks"]:
            self.check()  # no database checks: the configured database is never opened
        super().handle(*args, **{**options, "skip_checks": True})

    def run(self, *args: str, **options: Any) -> None:
        report = roundtrip.check_round_trips(
            options["app_label"],
            database=options["database"],
            since=options["since"],
            strict=options["strict"],
            keepdb=options["keepdb"],
            interactive=options["interactive"],
            progress=self.show_progress,
            confirm=self.confirm_callback(options),
        )
        error = report.error()
        if self.as_json:
            self.write_document(report.as_dict(), error)
            return
        self.render(report)
        if error is not None:
            raise error

    def show_progress(self, event: ProgressEvent) -> None:
        """Progress always goes to stderr: stdout carries the report."""
        if self.verbosity < 1:
            return
        out = self.stderr
        if event.action == "roundtrip_start":
            out.write(f"  {event.migration}...", ending="")
            out.flush()
        elif event.action == "roundtrip_done":
            text = f" {STATUS_TEXT[event.message]}"
            styled = self.style.SUCCESS(text) if event.message == "ok" else self.style.ERROR(text)
            out.write(f"{styled} ({event.duration:.3f}s)")
        elif event.action == "base_apply":
            if self.verbosity >= 2:
                out.write(f"  {event.migration}: applied once")
        elif event.message:
            out.write(event.message)

    def render(self, report: RoundTripReport) -> None:
        write = self.stdout.write
        write(
            self.style.MIGRATE_HEADING(
                f"Round trips on {report.test_database!r} (test database of {report.database!r}):"
            )
        )
        if not report.results:
            write("  No migrations to round-trip.")
        for result in report.results:
            if result.status != roundtrip.OK or self.verbosity >= 2:
                self.render_result(result)
        not_reached: dict[str, list[str]] = {}
        for skipped in report.not_reached:
            not_reached.setdefault(skipped.reason, []).append(skipped.migration)
        for reason, labels in not_reached.items():
            write(self.style.WARNING(f"  Not reached ({reason}): {', '.join(labels)}"))
        if report.model_changes:
            write(self.style.WARNING("  Model changes without a migration:"))
            for change in report.model_changes:
                write(f"    {change}")
        if report.package_model_changes:
            write(
                self.style.WARNING(
                    "  Model changes without a migration in installed packages (not the "
                    "project's to migrate: upgrade or reinstall them; THIRD_PARTY_STRICT makes "
                    "them errors):"
                )
            )
            for change in report.package_model_changes:
                write(f"    {change}")
        round_trips = ", ".join(
            f"{number} {status.replace('_', ' ')}" for status, number in report.counts().items()
        )
        once = report.applied_once_counts()
        write(
            f"{report.planned_round_trips} round trip(s): {round_trips}; "
            f"{report.planned_applied_once} other(s): {once['applied']} applied once, "
            f"{once[roundtrip.FAILED]} failed, {once['not_reached']} not reached."
        )

    def render_result(self, result: roundtrip.MigrationResult) -> None:
        line = f"  {result.migration}: {STATUS_TEXT[result.status]}"
        if not result.round_trip:
            line += " (applying it once)"
        if result.status == roundtrip.IRREVERSIBLE:
            line += f" ({'; '.join(result.irreversible_operations)})"
        self.stdout.write(line if result.status == roundtrip.OK else self.style.WARNING(line))
        for difference in result.differences:
            self.stdout.write(f"    {difference}")
        if result.error:
            self.stdout.write(f"    {result.phase}: {result.error}")
        if result.note:
            self.stdout.write(f"    {result.note}")
