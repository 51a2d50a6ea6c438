"""Reading the run audit back: for ``migrationhistory`` and ``migrationstatus``."""

from typing import Any, Final

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

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
