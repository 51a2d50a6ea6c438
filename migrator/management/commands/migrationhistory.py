"""``migrationhistory``: the audit log of runs on a database."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from migrator import history
from migrator.management.base import MigratorCommand
from migrator.models import Run


class Command(MigratorCommand):
    help = "Show the audit log: who ran what, where, when, how long, and how it ended."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--limit", type=int, default=20, help="How many runs to show (0: all). Default 20."
        )

    def run(self, **options: Any) -> None:
        if options["limit"] < 0:
            raise CommandError("--limit must be 0 or more.")
        runs = history.recent_runs(options["database"], limit=options["limit"])
        if self.as_json:
            self.write_json(
                {"database": options["database"], "runs": [history.run_as_dict(r) for r in runs]}
            )
            return
        if not runs:
            self.stdout.write(f"No runs recorded on {options['database']!r} yet.")
        for run in runs:
            self.render(run)

    def render(self, run: Run) -> None:
        style = {
            Run.Outcome.SUCCEEDED: self.style.SUCCESS,
            Run.Outcome.RUNNING: self.style.NOTICE,
        }.get(run.outcome, self.style.ERROR)
        took = f" in {run.duration:.2f}s" if run.duration is not None else ""
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"#{run.pk} {run.command}")
            + f" {run.started_at:%Y-%m-%d %H:%M:%S %Z} by {run.actor}@{run.host} pid {run.pid}"
            + f" ({run.environment}): "
            + style(run.outcome)
            + took
        )
        if run.git_revision:
            self.stdout.write(f"    revision {run.git_revision}")
        if run.backup_id:
            self.stdout.write(f"    backup {run.backup_id}")
        for step in run.steps.all():
            duration = f" ({step.duration:.3f}s)" if step.duration is not None else ""
            fake = " [fake]" if step.fake else ""
            self.stdout.write(f"    {step.direction} {step.app_label}.{step.name}{duration}{fake}")
        if run.failed_migration:
            self.stdout.write(self.style.ERROR(f"    failed at {run.failed_migration}"))
        if run.error:
            self.stdout.write(self.style.ERROR(f"    error: {run.error}"))
        for key, value in sorted(run.details.items()):
            if not isinstance(value, list):
                self.stdout.write(f"    {key}: {value}")
                continue
            self.stdout.write(f"    {key}:" if value else f"    {key}: none")
            for item in value:
                self.stdout.write(f"      {_risk_line(item) if key == 'risks' else _line(item)}")


def _risk_line(risk: dict[str, Any]) -> str:
    """'ledger.0004_x: ML101 danger, column memo of ledger_entry (3 rows)' from the audit."""
    where = ""
    if risk.get("table"):
        column = f"column {risk['column']} of " if risk.get("column") else "table "
        count = risk.get("rows")
        rows = "" if count is None else f" ({count:,} row{'' if count == 1 else 's'})"
        where = f", {column}{risk['table']}{rows}"
    acknowledged = f"; acknowledged: {risk['acknowledged']}" if risk.get("acknowledged") else ""
    return (
        f"{risk.get('migration')}: {risk.get('code')} {risk.get('severity')}{where}{acknowledged}"
    )


def _line(item: Any) -> str:
    """A detail entry on one line: a dict as 'key: value' pairs, leaving out empty ones."""
    if isinstance(item, dict):
        return ", ".join(f"{k}: {v}" for k, v in item.items() if v not in (None, "", [], {}))
    return str(item)
