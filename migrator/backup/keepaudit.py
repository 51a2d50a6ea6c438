"""Keeping the run audit across a restore.

A restore puts back the tables as they were at backup time, migrator's own included. The
runs recorded since (the migrations applied after the backup, this very restore) must
survive it. So the live ``migrator_run`` and ``migrator_runstep`` rows are read before the
restore and merged back into the restored tables in the restore's own transaction:

- a run is the same run when command, host, pid and start time agree: the restored row is
  then updated with the live one's outcome (the backup may have caught it running);
- a run the restored tables lack is inserted under its own id when that id is free, else
  under a new one; its steps follow it.

Hash records are not merged: they must describe the restored ``django_migrations``, so
the restored ones are kept and any without a matching applied migration are dropped. A
portable restore keeps migrator's own migrations applied, its tables being the installed
version's: their records the backup lacks (an older migrator's) are put back.

The statements are plain SQL with ``%s`` parameters, so one list serves every engine:
executed through Django's cursor, rendered to a psql script, or run on a SQLite file.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.management.color import no_style
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Field, Model

from migrator.backup.base import Statement
from migrator.models import MigrationHash, Run, RunStep
from migrator.types import MigrationKey

RUN_KEY = ("command", "host", "pid", "started_at")
RUN_OUTCOME = ("outcome", "finished_at", "error", "failed_migration", "backup_id", "details")
STEP_KEY = ("app_label", "name", "direction", "finished_at")


@dataclass
class AuditSnapshot:
    """The live audit, read before a restore."""

    runs: list[Run] = field(default_factory=list)
    steps: list[RunStep] = field(default_factory=list)


def snapshot(connection: BaseDatabaseWrapper) -> AuditSnapshot:
    """Read every run and step of the database (none when migrator's tables are missing)."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    if Run._meta.db_table not in tables:
        return AuditSnapshot()
    alias = connection.alias
    return AuditSnapshot(
        runs=list(Run.objects.using(alias).order_by("id")),
        steps=list(RunStep.objects.using(alias).order_by("id")),
    )


def find_run(connection: BaseDatabaseWrapper, run: Run) -> Run:
    """The row of ``run`` after a restore merged it back (its id may have changed)."""
    return Run.objects.using(connection.alias).get(**{name: getattr(run, name) for name in RUN_KEY})


def hashes_of(connection: BaseDatabaseWrapper, keys: set[MigrationKey]) -> list[MigrationHash]:
    """The hash records of these applied migrations, with their runs, read before a restore."""
    if not keys:
        return []
    records = MigrationHash.objects.using(connection.alias).select_related("run")
    return [
        record
        for record in records.filter(app_label__in={app_label for app_label, _ in keys})
        if (record.app_label, record.name) in keys
    ]


def put_back_hashes(connection: BaseDatabaseWrapper, records: list[MigrationHash]) -> None:
    """Insert the ``hashes_of`` records the restored table lacks, once the audit is merged
    back (each names its run as merged)."""
    hashes = MigrationHash.objects.using(connection.alias)
    present = set(hashes.values_list("app_label", "name"))
    for record in records:
        if (record.app_label, record.name) not in present:
            record.pk = None
            record.run = find_run(connection, record.run) if record.run else None
            record.save(using=connection.alias, force_insert=True)


class _Sql:
    """Quoting, placeholders and parameter preparation for one connection."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.quote = connection.ops.quote_name
        # PostgreSQL types an INSERT ... SELECT's parameters as text: cast them.
        self.cast = connection.vendor == "postgresql"

    def placeholder(self, model_field: Field) -> str:
        if self.cast:
            return f"CAST(%s AS {model_field.cast_db_type(self.connection)})"
        return "%s"

    def value(self, model_field: Field, obj: Model) -> Any:
        return model_field.get_db_prep_save(getattr(obj, model_field.attname), self.connection)

    def matches(self, table: str, model: type[Model], names: Sequence[str]) -> str:
        return " AND ".join(
            f"{table}.{self.quote(model._meta.get_field(name).column)} = "
            f"{self.placeholder(model._meta.get_field(name))}"
            for name in names
        )


def merge_statements(connection: BaseDatabaseWrapper, audit: AuditSnapshot) -> list[Statement]:
    """SQL that merges ``audit`` into restored tables and drops hashes nothing applied."""
    sql = _Sql(connection)
    with_ids = [_insert_run(sql, run, keep_id=True) for run in audit.runs]
    without_ids = [_insert_run(sql, run, keep_id=False) for run in audit.runs]
    by_id = {run.pk: run for run in audit.runs}
    return [
        *(_update_run(sql, run) for run in audit.runs),
        *with_ids,
        *_sequence_resets(connection, [Run]),
        *without_ids,
        *_sequence_resets(connection, [RunStep]),
        *(_insert_step(sql, step, by_id[step.run_id]) for step in audit.steps),
        _drop_orphan_hashes(sql),
    ]


def _key_values(sql: _Sql, run: Run) -> list[Any]:
    return [sql.value(Run._meta.get_field(name), run) for name in RUN_KEY]


def _update_run(sql: _Sql, run: Run) -> Statement:
    table = sql.quote(Run._meta.db_table)
    outcome = [Run._meta.get_field(name) for name in RUN_OUTCOME]
    assignments = ", ".join(f"{sql.quote(f.column)} = {sql.placeholder(f)}" for f in outcome)
    return (
        f"UPDATE {table} SET {assignments} WHERE {sql.matches(table, Run, RUN_KEY)}",
        [*(sql.value(f, run) for f in outcome), *_key_values(sql, run)],
    )


def _insert_run(sql: _Sql, run: Run, *, keep_id: bool) -> Statement:
    table = sql.quote(Run._meta.db_table)
    columns = [f for f in Run._meta.concrete_fields if keep_id or not f.primary_key]
    statement = (
        f"INSERT INTO {table} ({', '.join(sql.quote(f.column) for f in columns)}) "
        f"SELECT {', '.join(sql.placeholder(f) for f in columns)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {sql.matches(table, Run, RUN_KEY)})"
    )
    params = [*(sql.value(f, run) for f in columns), *_key_values(sql, run)]
    if keep_id:
        statement += (
            f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE {sql.matches(table, Run, ['id'])})"
        )
        params.append(run.pk)
    return statement, params


def _insert_step(sql: _Sql, step: RunStep, run: Run) -> Statement:
    runs, steps = sql.quote(Run._meta.db_table), sql.quote(RunStep._meta.db_table)
    run_field = RunStep._meta.get_field("run")
    columns = [f for f in RunStep._meta.concrete_fields if not f.primary_key]
    selected = [
        f"{runs}.{sql.quote('id')}" if f is run_field else sql.placeholder(f) for f in columns
    ]
    step_matches = sql.matches("s", RunStep, STEP_KEY)
    statement = (
        f"INSERT INTO {steps} ({', '.join(sql.quote(f.column) for f in columns)}) "
        f"SELECT {', '.join(selected)} FROM {runs} WHERE {sql.matches(runs, Run, RUN_KEY)} "
        f"AND NOT EXISTS (SELECT 1 FROM {steps} s WHERE s.{sql.quote(run_field.column)} = "
        f"{runs}.{sql.quote('id')} AND {step_matches})"
    )
    params = [
        *(sql.value(f, step) for f in columns if f is not run_field),
        *_key_values(sql, run),
        *(sql.value(RunStep._meta.get_field(name), step) for name in STEP_KEY),
    ]
    return statement, params


def _sequence_resets(connection: BaseDatabaseWrapper, models: list[type[Model]]) -> list[Statement]:
    return [(statement, []) for statement in connection.ops.sequence_reset_sql(no_style(), models)]


def _drop_orphan_hashes(sql: _Sql) -> Statement:
    hashes = sql.quote(MigrationHash._meta.db_table)
    recorded = sql.quote(MigrationRecorder.Migration._meta.db_table)
    return (
        f"DELETE FROM {hashes} WHERE NOT EXISTS (SELECT 1 FROM {recorded} m "
        f"WHERE m.{sql.quote('app')} = {hashes}.{sql.quote('app_label')} "
        f"AND m.{sql.quote('name')} = {hashes}.{sql.quote('name')})",
        [],
    )
