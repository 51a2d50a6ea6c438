"""Reading the run audit back: for ``migrationhistory`` and ``migrationstatus``."""

from typing import Any, Final

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader

from migrator import audit
from migrator.models import Run

SQL_LIMIT_MAX: Final = 2**63 - 1  # a larger LIMIT overflows the database's integer: every run


def has_audit_tables(connection: BaseDatabaseWrapper) -> bool:
    """Whether migrator's tables exist yet (a database never run through migrator has none)."""
    with connection.cursor() as cursor:
        return Run._meta.db_table in connection.introspection.table_names(cursor)


def recent_runs(database: str, *, limit: int | None = 20) -> list[Run]:
    """The latest runs on a database, newest first, with their steps loaded."""
    connection = connections[database]
    if not has_audit_tables(connection):
        return []
    audit.mark_dead_runs(connection)
    runs = Run.objects.using(database).prefetch_related("steps").order_by("-id")
    return list(runs[:limit] if limit and limit <= SQL_LIMIT_MAX else runs)


def run_as_dict(run: Run) -> dict[str, Any]:
    """A run as the ``--json`` outputs show it."""
    return {
        "id": run.pk,
        "command": run.command,
        "arguments": run.arguments,
        "database": run.database,
        "environment": run.environment,
        "actor": run.actor,
        "host": run.host,
        "pid": run.pid,
        "git_revision": run.git_revision,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration": run.duration,
        "outcome": run.outcome,
        "error": run.error,
        "failed_migration": run.failed_migration,
        "backup_id": run.backup_id or None,
        "details": run.details,
        "migrations": [
            {
                "migration": f"{step.app_label}.{step.name}",
                "direction": step.direction,
                "fake": step.fake,
                "duration": step.duration,
            }
            for step in run.steps.all()
        ],
    }


def left_part_way(run: Run | None, loader: MigrationLoader) -> str | None:
    """What to do about the non-atomic migration ``run`` stopped in (killed or failed),
    while it is still recorded as before (not applied by safemigrate, applied by rollback):
    what it did stays (a NOT VALID constraint rejects the old code's writes), and
    ``rollback --last`` does not undo it. None otherwise."""
    if run is None or run.outcome not in {Run.Outcome.FAILED, Run.Outcome.INTERRUPTED}:
        return None
    key = tuple(run.failed_migration.split(".", 1))
    node = loader.graph.nodes.get(key)
    undoing = run.command == "rollback"
    if node is None or node.atomic or (key in loader.applied_migrations) != undoing:
        return None
    return f"{run.command} run #{run.pk} {audit.stopped_part_way(run)}"
