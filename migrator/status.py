"""One database's migration state at a glance, for ``migrationstatus``."""

from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from migrator import audit, history, integrity, locking, operations, stages
from migrator.backup import last_drill, list_backups
from migrator.conf import get_settings
from migrator.exceptions import (
    BackupFailed,
    IntegrityViolation,
    MigratorError,
    MisorderedStages,
    UnappliedMigrations,
)
from migrator.models import Run
from migrator.types import Stage, migration_label


@dataclass
class DatabaseStatus:
    database: str
    vendor: str
    environment: str
    applied: int = 0
    pending: list[str] = field(default_factory=list)
    # Pending migrations by their own stage, in apply order.
    pending_by_stage: dict[Stage, list[str]] = field(default_factory=dict)
    # What ``safemigrate --stage before-deploy`` holds back, and why (as its --json says).
    held_back: list[stages.HeldBack] = field(default_factory=list)
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
        """For ``--check``: 2 when history is wrong, 1 when anything is pending, running or
        stopped half-way (a rollback of a batched data migration leaves nothing pending)."""
        error = self.not_ready(None)
        return 0 if error is None else error.exit_code

    def not_ready(self, stage: Stage | None) -> MigratorError | None:
        """``--check [--stage before-deploy]``'s verdict: None when ready, else why not.

        With the stage, only what the new code needs counts: a deploy switches traffic to it
        once nothing before_deploy is pending. A before_deploy migration held back behind an
        after_deploy one is not ready either: the new code would start without it.
        """
        where = f"Database {self.database!r} is not ready"
        if self.problems:
            return IntegrityViolation(f"{where}: history is wrong.")
        runs, batches = self.in_progress, self.batches_in_flight
        if stage is Stage.BEFORE_DEPLOY:  # an earlier release's after-deploy stage: not needed
            after = set(self.pending_by_stage.get(Stage.AFTER_DEPLOY, []))
            runs = [run for run in runs if not _after_deploy_run(run)]
            batches = [batch for batch in batches if batch["migration"] not in after]
        unfinished = self._unfinished(where, runs, batches)
        if unfinished is not None:
            return unfinished
        if stage is not Stage.BEFORE_DEPLOY and self.pending:
            return UnappliedMigrations(f"{where}: migrations are pending.")
        if stage is not Stage.BEFORE_DEPLOY:
            return None
        held = {item.label: item for item in self.held_back}
        applicable = [label for label in self.pending_by_stage.get(stage, []) if label not in held]
        if applicable:
            return UnappliedMigrations(
                f"{where}: before_deploy migrations are pending: {', '.join(applicable)}."
            )
        misordered = [item for item in self.held_back if item.stage is Stage.BEFORE_DEPLOY]
        if misordered:
            listed = "; ".join(f"{item.label} ({item.reason})" for item in misordered)
            return MisorderedStages(
                f"{where}: before_deploy migrations are held back behind after_deploy ones, "
                f"so the new code would start without them: {listed}. Make them depend on no "
                "pending after_deploy migration, or, if the new code does not need them, mark "
                "them after_deploy (stage = Stage.AFTER_DEPLOY, or MIGRATOR['STAGE_OVERRIDES'])."
            )
        return None

    @staticmethod
    def _unfinished(
        where: str, runs: list[dict[str, Any]], batches: list[dict[str, Any]]
    ) -> MigratorError | None:
        """Not ready while a run is in progress, or a batched data migration stopped half-way."""
        if runs:
            listed = ", ".join(f"{run['command']} #{run['id']}{_stage_of(run)}" for run in runs)
            return UnappliedMigrations(f"{where}: a run is in progress: {listed}.")
        if batches:
            stopped = ", ".join(f"{batch['migration']} ({batch['direction']})" for batch in batches)
            return UnappliedMigrations(
                f"{where}: a batched data migration stopped half-way: {stopped}; run the "
                "command that stopped (safemigrate, or the rollback) again to finish it."
            )
        return None

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
            "held_back": [item.as_dict() for item in self.held_back],
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
    _, status.held_back = stages.select(plan, executor.loader, Stage.BEFORE_DEPLOY)
    stage_of = {item.label: item.stage for item in status.held_back}
    status.pending_by_stage = {
        stage: [
            label for label in status.pending if stage_of.get(label, Stage.BEFORE_DEPLOY) is stage
        ]
        for stage in (Stage.BEFORE_DEPLOY, Stage.AFTER_DEPLOY)
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
        last = runs.exclude(outcome=Run.Outcome.RUNNING).order_by("-id").first()
        status.last_run = history.run_as_dict(last) if last else None
        left = history.left_part_way(last, executor.loader)
        if left:
            status.warnings.append(left)
    return status


def _after_deploy_run(run: dict[str, Any]) -> bool:
    stage = str(run["arguments"].get("stage")).replace("_", "-")  # call_command skips choices
    return run["command"] == "safemigrate" and stage == "after-deploy"


def _stage_of(run: dict[str, Any]) -> str:
    stage = run["arguments"].get("stage")
    return f" (stage {stage})" if stage else ""


def describe_drill(drill: dict[str, str] | None) -> str:
    """'drilled 2025-01-01T12:00:00: passed', for status lines and listings."""
    if not drill:
        return "never drilled"
    return f"drilled {str(drill.get('drilled', ''))[:19]}: {drill.get('outcome', '?')}"
