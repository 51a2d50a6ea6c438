"""Risk analysis: what each operation of a plan does to data, to locks and to running code.

Linters read migration files offline; this analysis also knows the database: how big each
table is (``table_rows``: an exact count for small tables, the planner's estimate for big
PostgreSQL tables, so that it never scans one) and which vendor runs the SQL. It walks a
plan with real project states, as ``MigrationExecutor`` does, and works out each
operation's effect in the direction it runs: undoing an ``AddField`` drops a column,
undoing a ``RemoveField`` brings one back empty. Every finding has a stable code from
``RISKS``, documented in docs/risks.md.
"""

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from django.db import OperationalError, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import truncate_name
from django.db.migrations import Migration, operations
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState
from django.db.models import NOT_PROVIDED, Field, Value
from django.db.models.options import normalize_together

from migrator import timeouts
from migrator.types import MigrationKey, MigrationPlan

EXACT_COUNT_LIMIT: Final = 10_000  # tables up to this many rows are counted exactly
LARGE_TABLE_ROWS: Final = 1_000_000  # a lock or rewrite of a table this big is "danger"
SEVERITIES: Final = ("info", "warning", "danger")


@dataclass(frozen=True)
class Risk:
    """One kind of finding: its stable code, what it means and the safe pattern."""

    code: str
    title: str
    hint: str


RISKS: Final[dict[str, Risk]] = {
    risk.code: risk
    for risk in [
        Risk(
            "ML101",
            "Column dropped: its data is lost (RemoveField, or undoing AddField).",
            "Back up what the column holds if it matters; drop it one release after the "
            "code stopped using it; acknowledge with migrator_acknowledge.",
        ),
        Risk(
            "ML102",
            "Table dropped: its rows are lost (DeleteModel, or undoing CreateModel).",
            "Back up the table if its rows matter; drop it one release after the code "
            "stopped using it; acknowledge with migrator_acknowledge.",
        ),
        Risk(
            "ML103",
            "Column narrowed (shorter, smaller or less precise type): values that do not "
            "fit are cut or make the migration fail.",
            "Check the longest/largest value first; add a new column, copy in batches, "
            "switch the code, then drop the old one.",
        ),
        Risk(
            "ML104",
            "Undoing a RemoveField: the column comes back empty; its old data is not restored.",
            "Restore the pre-migrate backup (rollback --last --restore) if the data matters.",
        ),
        Risk(
            "ML105",
            "Undoing a DeleteModel: the table comes back empty; its old rows are not restored.",
            "Restore the pre-migrate backup (rollback --last --restore) if the rows matter.",
        ),
        Risk(
            "ML201",
            "Irreversible operation: it cannot be rolled back.",
            "Give RunPython a reverse_code and RunSQL a reverse_sql (RunPython.noop / "
            "RunSQL.noop when nothing needs undoing), or rely on the pre-migrate backup.",
        ),
        Risk(
            "ML301",
            "PostgreSQL: index built without CONCURRENTLY; writes to the table are blocked "
            "while it builds.",
            "Use django.contrib.postgres.operations.AddIndexConcurrently in a migration "
            "with atomic = False (for a field's index: SeparateDatabaseAndState).",
        ),
        Risk(
            "ML302",
            "PostgreSQL: unique constraint or index built in place; writes are blocked "
            "while the table is scanned.",
            "CREATE UNIQUE INDEX CONCURRENTLY in a non-atomic migration, then ADD "
            "CONSTRAINT ... UNIQUE USING INDEX (SeparateDatabaseAndState keeps Django's state).",
        ),
        Risk(
            "ML303",
            "PostgreSQL: constraint validated in place; the table is locked while every "
            "row is checked.",
            "Use django.contrib.postgres.operations.AddConstraintNotValid, then "
            "ValidateConstraint in a later migration (it does not block writes).",
        ),
        Risk(
            "ML304",
            "PostgreSQL: foreign key validated in place; both tables are locked against "
            "writes while every row is checked.",
            "Add the field with db_constraint=False, then RunSQL ADD CONSTRAINT ... NOT "
            "VALID, then VALIDATE CONSTRAINT in a later migration.",
        ),
        Risk(
            "ML305",
            "PostgreSQL: SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock.",
            "Add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL (no "
            "scan on PostgreSQL 12+) and drop the check.",
        ),
        Risk(
            "ML306",
            "PostgreSQL: column type change rewrites the table and its indexes under an "
            "ACCESS EXCLUSIVE lock.",
            "Add a new column, backfill it in batches, switch the code, then drop the old column.",
        ),
        Risk(
            "ML307",
            "NOT NULL column added without any default: the migration fails on a table with rows.",
            "Give the field a default or db_default, or add it null=True, backfill, then "
            "make it NOT NULL.",
        ),
        Risk(
            "ML308",
            "Volatile default: a callable default is computed once for every existing row; "
            "a non-constant db_default rewrites the table on PostgreSQL.",
            "Add the column null=True, backfill it in batches with per-row values, then make "
            "it NOT NULL.",
        ),
        Risk(
            "ML401",
            "Column renamed: the code still running during the deploy uses the old name.",
            "Add the new column, write to both, backfill, switch reads, then drop the old "
            "one; or set db_column to keep the column name.",
        ),
        Risk(
            "ML402",
            "Table renamed: the code still running during the deploy uses the old name.",
            "Keep the table name with Meta.db_table, or rename in a maintenance window.",
        ),
        Risk(
            "ML403",
            "Column removed: the code still running during the deploy selects it.",
            "First deploy code without the field (SeparateDatabaseAndState with a "
            "state-only RemoveField), then drop the column in the next release.",
        ),
        Risk(
            "ML404",
            "Table removed: the code still running during the deploy uses it.",
            "First deploy code without the model (state-only DeleteModel), then drop the "
            "table in the next release.",
        ),
        Risk(
            "ML405",
            "NOT NULL column without a database default: inserts by the code still "
            "running during the deploy fail.",
            "Use db_default (Django 5.0+), or add it null=True and make it NOT NULL in a "
            "later release.",
        ),
        Risk(
            "ML501",
            "RunPython: migrator cannot see what it does, what it locks or how long it takes.",
            "Review it; batch big updates (migrator.operations), keep it idempotent and "
            "give it a reverse_code.",
        ),
        Risk(
            "ML502",
            "RunSQL: migrator cannot see what it does, what it locks or how long it takes.",
            "Review the SQL (CONCURRENTLY, NOT VALID, batches) and give it a reverse_sql.",
        ),
        Risk(
            "ML503",
            "Operation that migrator does not know: not analysed.",
            "Review what it does to the database.",
        ),
    ]
}


@dataclass(frozen=True)
class RowCount:
    """How many rows a table holds: exact, the planner's estimate, or a lower bound."""

    count: int | None  # None: the table does not exist (yet)
    exact: bool
    lower_bound: bool = False  # more than ``count - 1`` rows; no statistics to say more

    def describe(self) -> str:
        if self.count is None:
            return "size unknown"
        if self.lower_bound:
            return f"more than {self.count - 1:,} rows"
        plural = "" if self.count == 1 else "s"
        if self.exact:
            return f"{self.count:,} row{plural}"
        return f"~{self.count:,} row{plural}, estimate"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One risk of one operation, as ``PlannedOperation.findings`` carries it (as a dict)."""

    code: str
    severity: str
    message: str
    hint: str
    table: str | None = None
    column: str | None = None
    rows: int | None = None
    rows_exact: bool = False
    data_loss: bool = False
    acknowledged: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "table": self.table,
            "column": self.column,
            "rows": self.rows,
            "rows_exact": self.rows_exact,
            "data_loss": self.data_loss,
            "acknowledged": self.acknowledged,
        }


# Table sizes ---------------------------------------------------------------------------


def table_rows(
    connection: BaseDatabaseWrapper, table: str, *, limit: int = EXACT_COUNT_LIMIT
) -> RowCount:
    """The rows of ``table``, reading at most ``limit + 1`` of them, and none of a big one.

    PostgreSQL: a table whose planner estimate (``pg_class.reltuples``) is above ``limit``
    gets that estimate without being read; a smaller (or never analysed) one is counted
    with a bounded ``count(*)``. SQLite: a bounded count, then ``sqlite_stat1`` if
    ``ANALYZE`` ran, else a lower bound. A missing table gives ``RowCount(None, False)``.
    """
    estimate = _ESTIMATES.get(connection.vendor, _generic_exists)(connection, table)
    if estimate is _MISSING:
        return RowCount(None, False)
    if estimate is not None and estimate > limit:
        return RowCount(estimate, False)
    counted = _bounded_count(connection, table, limit)
    if counted is None:  # another session holds a lock on it: never wait for it
        return RowCount(estimate, False)
    if counted <= limit:
        return RowCount(counted, True)
    statistics = _STATISTICS.get(connection.vendor, _no_estimate)(connection, table)
    if statistics is not None and statistics > limit:
        return RowCount(statistics, False)
    return RowCount(limit + 1, False, lower_bound=True)


_MISSING: Final = -1
COUNT_LOCK_TIMEOUT: Final = "100ms"  # how long a count may wait for a table another session locked


def _bounded_count(connection: BaseDatabaseWrapper, table: str, limit: int) -> int | None:
    """``count(*)`` of at most ``limit + 1`` rows; None when the table is locked (PostgreSQL)."""
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM {connection.ops.quote_name(table)} "
        f"LIMIT {limit + 1}) bounded"
    )
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            # SET LOCAL, put back after: an enclosing transaction keeps its own setting.
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [COUNT_LOCK_TIMEOUT],
            )
            previous = cursor.fetchone()[0]
            cursor.execute(sql)
            counted = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
            return counted
    except OperationalError as exc:
        if timeouts.is_lock_timeout(exc):
            return None
        raise


def _postgres_estimate(connection: BaseDatabaseWrapper, table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    if row is None:
        return _MISSING
    return int(row[0]) if row[0] >= 0 else None  # -1: never vacuumed nor analysed


def _sqlite_exists(connection: BaseDatabaseWrapper, table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
        return None if cursor.fetchone() else _MISSING


def _sqlite_statistics(connection: BaseDatabaseWrapper, table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return None
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s AND stat != ''", [table])
        row = cursor.fetchone()
    return int(row[0].split()[0]) if row else None


def _generic_exists(connection: BaseDatabaseWrapper, table: str) -> int | None:
    with connection.cursor() as cursor:
        names = connection.introspection.table_names(cursor)
    return None if table in names else _MISSING


def _no_estimate(connection: BaseDatabaseWrapper, table: str) -> int | None:
    return None


_ESTIMATES: Final = {"postgresql": _postgres_estimate, "sqlite": _sqlite_exists}
_STATISTICS: Final = {"postgresql": _postgres_estimate, "sqlite": _sqlite_statistics}


# Plan analysis -------------------------------------------------------------------------


@dataclass(eq=False)
class TableRef:
    """A table as the plan sees it, and its name in the database as it is now."""

    name: str
    new: bool = False  # created earlier in this plan: empty, unknown to the running code
    gone: bool = False  # not in the database now: a rollback re-creates it empty


@dataclass
class _Draft:
    """A finding before the table sizes are known."""

    code: str
    text: str  # the message, with "{size}" where the table's size goes
    ref: TableRef | None = None
    column: str | None = None
    # fixed; loss: data lost if rows; fails: fails if rows; empty: comes back empty; size: locks
    scale: str = "fixed"
    severity: str = "warning"
    data_loss: bool = False
    sized: bool = True  # False: the row count is unknowable (a table that comes back)


def analyse_plan(
    plan: MigrationPlan, connection: BaseDatabaseWrapper, loader: MigrationLoader
) -> dict[MigrationKey, list[list[Finding]]]:
    """Findings for each migration of the plan, one list per operation in the order they run.

    Forward migrations are walked from the applied state, as ``_migrate_all_forwards``
    does; backward ones over the full plan from an empty state, as
    ``_migrate_all_backwards`` does, their operations undone last to first.
    """
    forwards = [migration for migration, backwards in plan if not backwards]
    backwards = [migration for migration, backwards in plan if backwards]
    drafts: dict[MigrationKey, list[list[_Draft]]] = {}
    if forwards:
        walker = _Walker(connection, plan_backwards=False)
        state = _applied_state(loader)
        for migration in forwards:
            drafts[_key(migration)] = walker.migration(migration, state, analyse=True)
    if backwards:
        walker = _Walker(connection, plan_backwards=True)
        drafts.update(_walk_backwards(walker, backwards, loader))
    sizes = _Sizes(connection)
    acknowledged = {_key(m): _acknowledgements(m) for m, _ in plan}
    return {
        key: [
            [sizes.finding(draft, acknowledged[key].get(draft.code)) for draft in operation]
            for operation in per_operation
        ]
        for key, per_operation in drafts.items()
    }


def _key(migration: Migration) -> MigrationKey:
    return (migration.app_label, migration.name)


def _acknowledgements(migration: Migration) -> dict[str, str]:
    """``Migration.migrator_acknowledge``: ``{"ML101": "why this is fine"}``."""
    raw = getattr(migration, "migrator_acknowledge", None) or {}
    return {str(code): str(reason) for code, reason in dict(raw).items()}


def _full_plan(loader: MigrationLoader) -> Iterator[Migration]:
    """Every migration in the order Django would apply them to an empty database."""
    seen: set[MigrationKey] = set()
    for target in loader.graph.leaf_nodes():
        for key in loader.graph.forwards_plan(target):
            if key not in seen:
                seen.add(key)
                yield loader.graph.nodes[key]


def _applied_state(loader: MigrationLoader) -> ProjectState:
    """The project state of the applied migrations (models only, never rendered)."""
    state = ProjectState(real_apps=loader.unmigrated_apps)
    applied = set(loader.applied_migrations)
    for migration in _full_plan(loader):
        if _key(migration) in applied:
            migration.mutate_state(state, preserve=False)
    return state


def _walk_backwards(
    walker: "_Walker", backwards: list[Migration], loader: MigrationLoader
) -> dict[MigrationKey, list[list[_Draft]]]:
    to_run = {_key(migration): migration for migration in backwards}
    applied = set(loader.applied_migrations)
    state = ProjectState(real_apps=loader.unmigrated_apps)
    drafts = {}
    for node in _full_plan(loader):
        if not to_run:
            break
        key = _key(node)
        if key in to_run:
            per_operation = walker.migration(to_run.pop(key), state, analyse=True)
            drafts[key] = per_operation[::-1]
        elif key in applied:
            walker.migration(node, state, analyse=False)
    return drafts


class _Sizes:
    """Row counts per table, each counted at most once per analysis."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.counts: dict[str, RowCount] = {}

    def rows(self, ref: TableRef) -> RowCount:
        if ref.new or ref.gone:
            return RowCount(0, True)
        if ref.name not in self.counts:
            self.counts[ref.name] = table_rows(self.connection, ref.name)
        return self.counts[ref.name]

    def finding(self, draft: _Draft, acknowledged: str | None) -> Finding:
        rows = RowCount(None, False)
        if draft.ref is not None and draft.sized:
            rows = self.rows(draft.ref)
        severity, data_loss = draft.severity, draft.data_loss
        has_rows = rows.count != 0
        if draft.scale == "loss":
            data_loss = has_rows
            severity = "danger" if has_rows else "info"
        elif draft.scale == "fails":
            severity = "danger" if has_rows else "info"
        elif draft.scale == "empty":
            severity = "warning" if has_rows else "info"
        elif draft.scale == "size":
            severity = size_severity(rows)
        size = "new table" if draft.ref is not None and draft.ref.new else rows.describe()
        text = draft.text
        if draft.scale in {"loss", "fails", "empty"} and not has_rows:
            head, tail = text.split("{size})", 1)
            text = f"{head}{{size}}){tail.split(':', 1)[0]}: no rows, nothing at stake."
        return Finding(
            code=draft.code,
            severity=severity,
            message=text.replace("{size}", size),
            hint=RISKS[draft.code].hint,
            table=draft.ref.name if draft.ref is not None else None,
            column=draft.column,
            rows=rows.count,
            rows_exact=rows.exact,
            data_loss=data_loss,
            acknowledged=acknowledged,
        )


def size_severity(rows: RowCount) -> str:
    """How bad a lock or a rewrite is for a table of this size."""
    if rows.count is None:
        return "warning"
    if rows.count <= EXACT_COUNT_LIMIT and rows.exact:
        return "info"
    return "danger" if rows.count >= LARGE_TABLE_ROWS else "warning"


def _is_fk(field: Field) -> bool:
    return bool(getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False))


def _column(name: str, field: Field) -> str | None:
    if field.many_to_many:
        return None
    return field.db_column or (f"{name}_id" if _is_fk(field) else name)


def _remote(field: Field) -> str:
    model = field.remote_field.model
    if isinstance(model, str):
        return model.lower()
    return model._meta.label_lower


def _db_default(field: Field) -> Any:
    return getattr(field, "db_default", NOT_PROVIDED)  # Django 5.0+


def _has_value_for_rows(field: Field) -> bool:
    """Whether adding the column gives existing rows a value (Django's effective default)."""
    return (
        field.null
        or field.has_default()
        or _db_default(field) is not NOT_PROVIDED
        or getattr(field, "generated", False)
        or (field.blank and field.empty_strings_allowed)
        or getattr(field, "auto_now", False)
        or getattr(field, "auto_now_add", False)
    )


_INTEGER_RANK: Final = {
    "SmallIntegerField": 1,
    "PositiveSmallIntegerField": 1,
    "SmallAutoField": 1,
    "IntegerField": 2,
    "PositiveIntegerField": 2,
    "AutoField": 2,
    "BigIntegerField": 3,
    "PositiveBigIntegerField": 3,
    "BigAutoField": 3,
}


def narrowing(old: Field, new: Field) -> str | None:
    """Why changing ``old`` into ``new`` can lose values, or None when it cannot."""
    old_type, new_type = old.get_internal_type(), new.get_internal_type()
    old_length, new_length = getattr(old, "max_length", None), getattr(new, "max_length", None)
    if new_length is not None and old_type not in _INTEGER_RANK:
        if old_length is not None and new_length < old_length:
            return f"max_length {old_length} -> {new_length}"
        if old_length is None and old_type in {"TextField", "JSONField"}:
            return f"{old_type} -> max_length {new_length}"
    ranks = _INTEGER_RANK.get(old_type, 0), _INTEGER_RANK.get(new_type, 0)
    if 0 < ranks[1] < ranks[0]:
        return f"{old_type} -> {new_type}"
    if old_type in {"FloatField", "DecimalField"} and new_type in _INTEGER_RANK:
        return f"{old_type} -> {new_type}: fractions are lost"
    if old_type == new_type == "DecimalField" and (
        new.max_digits < old.max_digits or new.decimal_places < old.decimal_places
    ):
        return (
            f"decimal({old.max_digits},{old.decimal_places}) -> "
            f"decimal({new.max_digits},{new.decimal_places})"
        )
    if old_type == "DateTimeField" and new_type == "DateField":
        return "DateTimeField -> DateField: the time of day is lost"
    return None


def _db_type(field: Field, connection: BaseDatabaseWrapper) -> str | None:
    try:
        return field.db_type(connection)
    except Exception:  # noqa: BLE001  (a custom field may need a model to answer)
        return None


def _rewrites(old_type: str, new_type: str) -> bool:
    """Whether PostgreSQL rewrites the table to change a column from one type to another."""
    if old_type == new_type:
        return False
    if old_type.startswith("varchar") and new_type == "text":
        return False
    for family in ("varchar", "numeric"):
        old_args, new_args = _type_args(old_type, family), _type_args(new_type, family)
        if old_args and new_args:
            # Longer varchar, or more digits with the same scale: no rewrite since 9.2.
            same_scale = old_args[1:] == new_args[1:]
            return not (same_scale and new_args[0] >= old_args[0])
    return True


def _type_args(db_type: str, family: str) -> tuple[int, ...] | None:
    if not db_type.startswith(f"{family}(") or not db_type.endswith(")"):
        return None
    try:
        return tuple(int(part) for part in db_type[len(family) + 1 : -1].split(","))
    except ValueError:
        return None


def _describe(operation: Operation) -> str:
    try:
        return operation.describe()
    except Exception:  # noqa: BLE001  (a third-party operation's describe() may be broken)
        return type(operation).__name__


def _describe_callable(function: Any) -> str:
    return getattr(function, "__qualname__", None) or getattr(function, "__name__", "code")


class _Walker:
    """Walks migrations over a project state, drafting findings for each operation."""

    def __init__(self, connection: BaseDatabaseWrapper, *, plan_backwards: bool) -> None:
        self.connection = connection
        self.postgres = connection.vendor == "postgresql"
        self.plan_backwards = plan_backwards
        self.refs: dict[str, TableRef] = {}

    def ref(self, table: str) -> TableRef:
        return self.refs.setdefault(table, TableRef(table))

    def migration(
        self, migration: Migration, state: ProjectState, *, analyse: bool
    ) -> list[list[_Draft]]:
        """Move ``state`` past ``migration``; with ``analyse``, draft each operation's risks."""
        per_operation = []
        for operation in migration.operations:
            drafts = []
            if analyse:
                drafts = self.operation(operation, migration.app_label, state)
            else:
                self._follow_tables(operation, migration.app_label, state)
            operation.state_forwards(migration.app_label, state)
            per_operation.append(drafts)
        return per_operation

    def operation(self, operation: Operation, app_label: str, state: ProjectState) -> list:
        """Drafts for one operation, given the state just before it (forwards)."""
        drafts: list[_Draft] = []
        backwards = self.plan_backwards
        if not operation.reversible:
            text = "cannot be undone" if backwards else "cannot be rolled back"
            severity = "danger" if backwards else "warning"
            drafts.append(_Draft("ML201", f"{_describe(operation)}: {text}.", severity=severity))
        if isinstance(operation, operations.SeparateDatabaseAndState):
            drafts.extend(self._separate(operation, app_label, state))
            return drafts
        handler = self._handler(operation)
        if handler is None:
            drafts.append(
                _Draft(
                    "ML503",
                    f"{type(operation).__name__}: not analysed by migrator.",
                    severity="info",
                )
            )
            return drafts
        drafts.extend(handler(operation, app_label, state))
        return drafts

    def _handler(self, operation: Operation):
        handlers = [
            (operations.AddField, self._add_field),
            (operations.RemoveField, self._remove_field),
            (operations.AlterField, self._alter_field),
            (operations.RenameField, self._rename_field),
            (operations.CreateModel, self._create_model),
            (operations.DeleteModel, self._delete_model),
            (operations.RenameModel, self._rename_model),
            (operations.AlterModelTable, self._alter_model_table),
            (operations.AddIndex, self._add_index),
            (operations.RemoveIndex, self._remove_index),
            (operations.AddConstraint, self._add_constraint),
            (operations.RemoveConstraint, self._remove_constraint),
            (operations.AlterUniqueTogether, self._alter_together),
            (operations.AlterIndexTogether, self._alter_together),
            (operations.RunPython, self._run_python),
            (operations.RunSQL, self._run_sql),
        ]
        for operation_class, handler in handlers:
            if isinstance(operation, operation_class):
                return handler
        if _harmless(operation):
            return _nothing
        return None

    # -- state helpers ---------------------------------------------------------------

    def _model(self, state: ProjectState, app_label: str, name: str) -> ModelState | None:
        model = state.models.get((app_label, name.lower()))
        if model is None:
            return None
        options = model.options
        if not options.get("managed", True) or options.get("proxy", False):
            return None
        if _swapped(model):
            return None
        if not router.allow_migrate(self.connection.alias, app_label, model_name=model.name_lower):
            return None
        return model

    def _table_name(self, app_label: str, name: str, options: dict[str, Any]) -> str:
        return options.get("db_table") or truncate_name(
            f"{app_label}_{name.lower()}", self.connection.ops.max_name_length()
        )

    def _table(self, model: ModelState) -> TableRef:
        return self.ref(self._table_name(model.app_label, model.name, model.options))

    def _join_table(self, model: ModelState, name: str, field: Field) -> TableRef | None:
        if field.remote_field.through:  # an explicit through model keeps its own table
            return None
        table = self._table_name(model.app_label, model.name, model.options)
        return self.ref(
            field.db_table
            or truncate_name(f"{table}_{name}", self.connection.ops.max_name_length())
        )

    def _rename(self, old: str, new: str) -> None:
        """A table renamed in the walk; in a backward plan, the new name is the live one."""
        ref = self.refs.pop(old, None) or TableRef(old)
        if self.plan_backwards:
            ref.name = new
        self.refs[new] = ref

    def _follow_tables(self, operation: Operation, app_label: str, state: ProjectState) -> None:
        """Track table renames and creations of migrations that are walked, not analysed."""
        if isinstance(operation, operations.RenameModel | operations.AlterModelTable):
            self._rename_model(operation, app_label, state)
        elif isinstance(operation, operations.CreateModel):
            self._create_model(operation, app_label, state)
        elif isinstance(operation, operations.DeleteModel):
            model = self._model(state, app_label, operation.name)
            if model is not None:
                self._table(model).gone = self.plan_backwards

    # -- effects -----------------------------------------------------------------------

    def _add_field(self, op: operations.AddField, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None:
            return []
        if self.plan_backwards:
            return self._drop_column(model, op.name, op.field)
        return self._add_column(model, op.name, op.field)

    def _remove_field(self, op: operations.RemoveField, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or op.name not in model.fields:
            return []
        field = model.fields[op.name]
        if self.plan_backwards:
            return self._add_column(model, op.name, field, restored=True)
        return self._drop_column(model, op.name, field)

    def _alter_field(self, op: operations.AlterField, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or op.name not in model.fields:
            return []
        old, new = model.fields[op.name], op.field
        if self.plan_backwards:
            old, new = new, old
        return self._alter_column(model, op.name, old, new)

    def _rename_field(self, op: operations.RenameField, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or op.old_name not in model.fields:
            return []
        field = model.fields[op.old_name]
        old, new = _column(op.old_name, field), _column(op.new_name, field)
        if self.plan_backwards:
            old, new = new, old
        table = self._table(model)
        if old == new or old is None or table.new:
            return []
        return [
            _Draft(
                "ML401",
                f"Renames column {old} of {table.name} ({{size}}) to {new}: the running "
                "code still uses the old name.",
                table,
                old,
            )
        ]

    def _create_model(self, op: operations.CreateModel, app_label: str, state: ProjectState):
        options = op.options
        if not options.get("managed", True) or options.get("proxy", False):
            return []
        if not router.allow_migrate(self.connection.alias, app_label, model_name=op.name_lower):
            return []
        table_name = self._table_name(app_label, op.name, options)
        if self.plan_backwards:
            table = self.ref(table_name)
            table.gone = False
            return self._drop_table(table)
        table = self.refs[table_name] = TableRef(table_name, new=True)
        for name, field in op.fields:
            if field.many_to_many and not field.remote_field.through:
                join = field.db_table or truncate_name(
                    f"{table_name}_{name}", self.connection.ops.max_name_length()
                )
                self.refs[join] = TableRef(join, new=True)
        return []

    def _delete_model(self, op: operations.DeleteModel, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.name)
        if model is None:
            return []
        table = self._table(model)
        if self.plan_backwards:
            table.gone = True
            return [
                _Draft(
                    "ML105",
                    f"Re-creates table {table.name} empty: its old rows are not restored.",
                    table,
                    sized=False,
                )
            ]
        return self._drop_table(table)

    def _rename_model(self, op: Operation, app_label: str, state: ProjectState):
        name = op.old_name if isinstance(op, operations.RenameModel) else op.name
        model = self._model(state, app_label, name)
        if model is None:
            return []
        old = self._table_name(app_label, model.name, model.options)
        if isinstance(op, operations.RenameModel):
            new = self._table_name(app_label, op.new_name, model.options)
        else:
            new = self._table_name(app_label, model.name, {"db_table": op.table})
        if old == new:
            return []
        table = self.ref(old)
        self._rename(old, new)
        if table.new:
            return []
        shown_old, shown_new = (new, old) if self.plan_backwards else (old, new)
        return [
            _Draft(
                "ML402",
                f"Renames table {shown_old} ({{size}}) to {shown_new}: the running code "
                "still uses the old name.",
                table,
            )
        ]

    def _alter_model_table(self, op: Operation, app_label: str, state: ProjectState):
        return self._rename_model(op, app_label, state)

    def _add_index(self, op: operations.AddIndex, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or self.plan_backwards:
            return []  # undoing it drops the index: cheap
        return self._create_index(model, op.index.name, _concurrent(op))

    def _remove_index(self, op: operations.RemoveIndex, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or not self.plan_backwards:
            return []
        return self._create_index(model, op.name, _concurrent(op))

    def _add_constraint(self, op: operations.AddConstraint, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.model_name)
        if model is None or self.plan_backwards or _not_valid(op):
            return []
        return self._new_constraint(model, op.constraint)

    def _remove_constraint(
        self, op: operations.RemoveConstraint, app_label: str, state: ProjectState
    ):
        model = self._model(state, app_label, op.model_name)
        if model is None or not self.plan_backwards:
            return []
        constraint = next(
            (c for c in model.options.get("constraints", []) if c.name == op.name), None
        )
        return [] if constraint is None else self._new_constraint(model, constraint)

    def _alter_together(self, op: Operation, app_label: str, state: ProjectState):
        model = self._model(state, app_label, op.name)
        if model is None:
            return []
        old = set(normalize_together(model.options.get(op.option_name) or set()))
        new = set(op.option_value or set())
        if self.plan_backwards:
            old, new = new, old
        table = self._table(model)
        if not self.postgres or table.new or not new - old:
            return []
        unique = op.option_name == "unique_together"
        columns = ", ".join(" + ".join(fields) for fields in sorted(new - old))
        kind = "unique index" if unique else "index"
        return [
            _Draft(
                "ML302" if unique else "ML301",
                f"Builds a {kind} on {columns} of {table.name} ({{size}}) without CONCURRENTLY.",
                table,
                scale="size",
            )
        ]

    def _run_python(self, op: operations.RunPython, app_label: str, state: ProjectState):
        code = op.reverse_code if self.plan_backwards else op.code
        if code is None or code is operations.RunPython.noop:
            return []
        if not router.allow_migrate(self.connection.alias, app_label, **op.hints):
            return []
        return [
            _Draft("ML501", f"RunPython {_describe_callable(code)}: effect unknown to migrator.")
        ]

    def _run_sql(self, op: operations.RunSQL, app_label: str, state: ProjectState):
        sql = op.reverse_sql if self.plan_backwards else op.sql
        if sql is None or sql == operations.RunSQL.noop or sql == []:
            return []
        if not router.allow_migrate(self.connection.alias, app_label, **op.hints):
            return []
        first = sql if isinstance(sql, str) else str(next(iter(sql), ""))
        first = " ".join(str(first).split())
        if len(first) > 60:
            first = first[:57] + "..."
        return [_Draft("ML502", f"RunSQL {first!r}: effect unknown to migrator.")]

    def _separate(self, op: operations.SeparateDatabaseAndState, app_label: str, state):
        database_state = state.clone()
        drafts = []
        for operation in op.database_operations:
            drafts.append(self.operation(operation, app_label, database_state))
            operation.state_forwards(app_label, database_state)
        if self.plan_backwards:
            drafts.reverse()
        return [draft for operation_drafts in drafts for draft in operation_drafts]

    # -- the effects themselves ----------------------------------------------------------

    def _drop_column(self, model: ModelState, name: str, field: Field) -> list[_Draft]:
        if field.many_to_many:
            join = self._join_table(model, name, field)
            return [] if join is None else self._drop_table(join)
        table, column = self._table(model), _column(name, field)
        drafts = [
            _Draft(
                "ML101",
                f"Drops column {column} of {table.name} ({{size}}): its data is lost.",
                table,
                column,
                scale="loss",
            )
        ]
        if not table.new:
            drafts.append(
                _Draft(
                    "ML403",
                    f"Removes column {column} of {table.name} ({{size}}) that the running "
                    "code still selects.",
                    table,
                    column,
                )
            )
        return drafts

    def _drop_table(self, table: TableRef) -> list[_Draft]:
        drafts = [
            _Draft(
                "ML102",
                f"Drops table {table.name} ({{size}}): its rows are lost.",
                table,
                scale="loss",
            )
        ]
        if not table.new:
            drafts.append(
                _Draft(
                    "ML404",
                    f"Removes table {table.name} ({{size}}) that the running code still uses.",
                    table,
                )
            )
        return drafts

    def _add_column(
        self, model: ModelState, name: str, field: Field, *, restored: bool = False
    ) -> list[_Draft]:
        if field.many_to_many:
            join = self._join_table(model, name, field)
            if join is not None and not self.plan_backwards:
                self.refs[join.name] = TableRef(join.name, new=True)
            return []
        table, column = self._table(model), _column(name, field)
        drafts = []
        if restored:
            drafts.append(
                _Draft(
                    "ML104",
                    f"Re-creates column {column} of {table.name} ({{size}}) empty: its old "
                    "data is not restored.",
                    table,
                    column,
                    scale="empty",
                )
            )
        if not _has_value_for_rows(field):
            drafts.append(
                _Draft(
                    "ML307",
                    f"Adds NOT NULL column {column} to {table.name} ({{size}}) without a "
                    "default: it fails if the table has rows.",
                    table,
                    column,
                    scale="fails",
                )
            )
        if table.new:
            return drafts
        if not field.null and _db_default(field) is NOT_PROVIDED:
            drafts.append(
                _Draft(
                    "ML405",
                    f"Adds NOT NULL column {column} to {table.name} ({{size}}) without a "
                    "database default: inserts by the running code fail.",
                    table,
                    column,
                )
            )
        drafts.extend(self._volatile_default(table, column, field))
        if self.postgres:
            drafts.extend(self._column_indexes(table, column, field, None))
        return drafts

    def _volatile_default(self, table: TableRef, column: str, field: Field) -> list[_Draft]:
        db_default = _db_default(field)
        if field.has_default() and callable(field.default):
            unique = " and the unique constraint fails" if field.unique else ""
            return [
                _Draft(
                    "ML308",
                    f"Default {_describe_callable(field.default)} of column {column} of "
                    f"{table.name} ({{size}}) is computed once: every existing row gets the "
                    f"same value{unique}.",
                    table,
                    column,
                    scale="fails" if field.unique else "size",
                )
            ]
        if self.postgres and db_default is not NOT_PROVIDED and not _constant(db_default):
            return [
                _Draft(
                    "ML308",
                    f"db_default {db_default!r} of column {column} of {table.name} "
                    "({size}) may be volatile: PostgreSQL then rewrites the table.",
                    table,
                    column,
                    scale="size",
                )
            ]
        return []

    def _column_indexes(
        self, table: TableRef, column: str, new: Field, old: Field | None
    ) -> list[_Draft]:
        """Indexes and constraints that adding ``new`` (or turning ``old`` into it) builds."""
        drafts = []
        was_unique = old is not None and old.unique
        was_indexed = old is not None and (old.db_index or old.unique)
        if new.unique and not new.primary_key and not was_unique:
            drafts.append(
                _Draft(
                    "ML302",
                    f"Builds a unique index on {column} of {table.name} ({{size}}) in place.",
                    table,
                    column,
                    scale="size",
                )
            )
        elif new.db_index and not new.unique and not was_indexed:
            drafts.append(
                _Draft(
                    "ML301",
                    f"Builds an index on {column} of {table.name} ({{size}}) without CONCURRENTLY.",
                    table,
                    column,
                    scale="size",
                )
            )
        had_constraint = old is not None and _is_fk(old) and old.db_constraint
        if _is_fk(new) and new.db_constraint and not had_constraint:
            drafts.append(
                _Draft(
                    "ML304",
                    f"Adds a foreign key on {column} of {table.name} ({{size}}) to "
                    f"{_remote(new)}, validated in place.",
                    table,
                    column,
                    scale="size",
                )
            )
        return drafts

    def _alter_column(self, model: ModelState, name: str, old: Field, new: Field):
        if old.many_to_many or new.many_to_many:
            return []
        table, column = self._table(model), _column(name, new)
        drafts = []
        narrowed = narrowing(old, new)
        if narrowed:
            drafts.append(
                _Draft(
                    "ML103",
                    f"Narrows column {column} of {table.name} ({{size}}), {narrowed}: values "
                    "that do not fit are cut or fail.",
                    table,
                    column,
                    scale="loss",
                )
            )
        if not self.postgres or table.new:
            return drafts
        if old.null and not new.null and not new.primary_key:
            drafts.append(
                _Draft(
                    "ML305",
                    f"Sets column {column} of {table.name} ({{size}}) NOT NULL: a full "
                    "scan under an ACCESS EXCLUSIVE lock.",
                    table,
                    column,
                    scale="size",
                )
            )
        old_type, new_type = _db_type(old, self.connection), _db_type(new, self.connection)
        relational = old.is_relation or new.is_relation
        if not relational and old_type and new_type and _rewrites(old_type, new_type):
            drafts.append(
                _Draft(
                    "ML306",
                    f"Changes column {column} of {table.name} ({{size}}) from {old_type} to "
                    f"{new_type}: the table is rewritten.",
                    table,
                    column,
                    scale="size",
                )
            )
        drafts.extend(self._column_indexes(table, column, new, old))
        return drafts

    def _create_index(self, model: ModelState, index_name: str, concurrent: bool):
        table = self._table(model)
        if not self.postgres or concurrent or table.new:
            return []
        return [
            _Draft(
                "ML301",
                f"Builds index {index_name} on {table.name} ({{size}}) without CONCURRENTLY.",
                table,
                scale="size",
            )
        ]

    def _new_constraint(self, model: ModelState, constraint: Any) -> list[_Draft]:
        table = self._table(model)
        if not self.postgres or table.new:
            return []
        from django.db.models import UniqueConstraint

        if isinstance(constraint, UniqueConstraint):
            code, what = "ML302", f"Builds unique constraint {constraint.name}"
        else:
            code, what = "ML303", f"Validates constraint {constraint.name}"
        return [_Draft(code, f"{what} on {table.name} ({{size}}) in place.", table, scale="size")]


def _nothing(operation: Operation, app_label: str, state: ProjectState) -> list[_Draft]:
    return []


_HARMLESS: Final = (
    operations.AlterModelOptions,
    operations.AlterModelManagers,
    operations.AlterOrderWithRespectTo,
    operations.RenameIndex,
    operations.AlterModelTableComment,
)


def _harmless(operation: Operation) -> bool:
    return isinstance(operation, _HARMLESS) or _postgres_operation(
        operation, "CreateExtension", "CollationOperation", "ValidateConstraint"
    )


def _postgres_operation(operation: Operation, *names: str) -> bool:
    """Whether an operation is one of django.contrib.postgres.operations' named classes.

    Looked up where the migrations that use it imported it: importing it here would load
    a PostgreSQL driver into every run, SQLite's too, for nothing.
    """
    module = sys.modules.get("django.contrib.postgres.operations")
    return module is not None and isinstance(
        operation, tuple(getattr(module, name) for name in names)
    )


def _concurrent(operation: Operation) -> bool:
    return _postgres_operation(operation, "AddIndexConcurrently", "RemoveIndexConcurrently")


def _not_valid(operation: Operation) -> bool:
    return _postgres_operation(operation, "AddConstraintNotValid")


def _constant(expression: Any) -> bool:
    if isinstance(expression, Value) or not hasattr(expression, "resolve_expression"):
        return True
    from django.db.models.functions import Now

    return isinstance(expression, Now)  # now() is STABLE: no rewrite


def _swapped(model: ModelState) -> bool:
    """A swappable model replaced by another (``auth.User`` under a custom user model)."""
    setting = model.options.get("swappable")
    if not setting:
        return False
    from django.conf import settings

    swapped_for = getattr(settings, setting, None)
    return bool(swapped_for) and swapped_for.lower() != f"{model.app_label}.{model.name_lower}"


# Reading findings ----------------------------------------------------------------------


class LabelledFinding(NamedTuple):
    migration: str  # "app_label.name"
    operation: str  # the operation's description
    finding: dict[str, Any]


def plan_findings(plan: Iterable[Any]) -> list[LabelledFinding]:
    """Every finding of a described plan, with its migration and operation."""
    return [
        LabelledFinding(migration.label, operation.description, finding)
        for migration in plan
        for operation in migration.operations
        for finding in operation.findings
    ]


def data_loss_findings(plan: Iterable[Any]) -> list[dict[str, Any]]:
    """The findings of a described plan that destroy data (or cannot bring it back)."""
    return [item.finding for item in plan_findings(plan) if item.finding["data_loss"]]


def describe_loss(finding: dict[str, Any]) -> str:
    """'column memo of ledger_entry (12 rows)', for refusal messages and prompts."""
    table = finding["table"] or "?"
    where = f"column {finding['column']} of {table}" if finding["column"] else f"table {table}"
    rows = finding["rows"]
    if rows is None:
        return f"{where} (rows that cannot be brought back)"
    size = RowCount(rows, finding["rows_exact"]).describe()
    return f"{where} ({size})"


def audit_summary(plan: Iterable[Any]) -> list[dict[str, Any]]:
    """What a run's audit record keeps of its plan's findings: all but the plain info ones."""
    return [
        {
            "migration": item.migration,
            "code": item.finding["code"],
            "severity": item.finding["severity"],
            "table": item.finding["table"],
            "column": item.finding["column"],
            "rows": item.finding["rows"],
            "acknowledged": item.finding["acknowledged"],
        }
        for item in plan_findings(plan)
        if item.finding["severity"] != "info" or item.finding["acknowledged"]
    ]
