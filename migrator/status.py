"""One database's migration state at a glance, for ``migrationstatus``."""

from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from migrator import audit, history, integrity, locking, operations, stages
from migrator.backup import last_drill, list_backups
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed
from migrator.models import Run
from migrator.types import Stage, migration_label


@dataclass
class DatabaseStatus:
    database: str
    vendor: str
    environment: str
    applied: int = 0
    pending: list[str] = field(default_factory=list)
    # What ``safemigrate --stage before-deploy`` would apply, and what it holds back.
    pending_by_stage: dict[Stage, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # integrity and history errors
    warnings: list[str] = field(default_factory=list)  # unverified, third-party changes
    lock_holder: dict[str, Any] | None = None
    in_progress: list[dict[str, Any]] = field(default_factory=list)
    # Batched data migrations started and not finished: running, or stopped half-way.
    batches_in_flight: list[dict[str, Any]] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    latest_backup: dict[str, Any] | None = None
    backup_store_error: str | None = None  # the backups could not be listed: why

    @property
    def exit_code(self) -> int:
        """For ``--check``: 2 when history is wrong, 1 when anything is pending (a batched
        data migration stopped half-way too: a rollback of one leaves nothing pending), else 0.
        """
        if self.problems:
            return 2
        return 1 if self.pending or self.in_progress or self.batches_in_flight else 0

    def gate(self, stage: Stage | None) -> int:
        """``--check [--stage before-deploy]``: with the stage, only before_deploy counts.

        A deploy switches traffic to the new code once nothing it needs is pending: the
        after_deploy migrations are meant to wait for it.
        """
        if stage is not Stage.BEFORE_DEPLOY or self.problems:
            return self.exit_code
        unfinished = self.in_progress or self.batches_in_flight
        return 1 if self.pending_by_stage.get(stage) or unfinished else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "vendor": self.vendor,
            "environment": self.environment,
            "applied": self.applied,
            "pending": self.pending,
            "pending_by_stage": {
                stage.value: labels for stage, labels in self.pending_by_stage.items()
            },
            "problems": self.problems,
            "warnings": self.warnings,
            "latest_backup": self.latest_backup,
            "backup_store_error": self.backup_store_error,
            "lock_holder": self.lock_holder,
            "in_progress": self.in_progress,
            "batches_in_flight": self.batches_in_flight,
            "last_run": self.last_run,
            "ok": self.exit_code == 0,
        }


def database_status(database: str) -> DatabaseStatus:
    """Applied and pending migrations, history problems, the lock holder and the last runs."""
    connection = connections[database]
    status = DatabaseStatus(
        database=database, vendor=connection.vendor, environment=get_settings().environment
    )
    with integrity.graph_errors():  # a deleted dependency: exit 2 with the file named
        executor = MigrationExecutor(connection)
    report = integrity.verify(connection, executor.loader, check_models=False)
    status.problems = [problem.line() for problem in report.errors]
    status.warnings = integrity.warning_summaries(report)
    try:
        backups = list_backups(database)
        if backups:
            latest = backups[0]
            status.latest_backup = {**latest.as_dict(), "last_drill": last_drill(latest.id)}
    except BackupFailed as exc:  # a store out of reach: the rest still answers a deploy gate
        status.backup_store_error = str(exc)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    status.pending = [migration_label(migration) for migration, _ in plan]
    before, held = stages.select(plan, executor.loader, Stage.BEFORE_DEPLOY)
    status.pending_by_stage = {
        Stage.BEFORE_DEPLOY: [migration_label(migration) for migration, _ in before],
        Stage.AFTER_DEPLOY: [item.label for item in held],
    }
    graph, recorded = executor.loader.graph, executor.loader.applied_migrations
    status.applied = sum(key in recorded for key in graph.nodes)  # a squash counts once
    status.batches_in_flight = operations.progress_in_flight(connection)
    holder = locking.current_holder(connection)
    status.lock_holder = holder.as_dict() if holder else None
    if history.has_audit_tables(connection):
        audit.mark_dead_runs(connection)
        runs = Run.objects.using(database)
        status.in_progress = [
            history.run_as_dict(run) for run in runs.filter(outcome=Run.Outcome.RUNNING)
        ]
        last = runs.exclude(outcome=Run.Outcome.RUNNING).order_by("-started_at", "-id").first()
        status.last_run = history.run_as_dict(last) if last else None
    return status


def describe_drill(drill: dict[str, str] | None) -> str:
    """'drilled 2025-01-01T12:00:00: passed', for status lines and listings."""
    if not drill:
        return "never drilled"
    return f"drilled {str(drill.get('drilled', ''))[:19]}: {drill.get('outcome', '?')}"
