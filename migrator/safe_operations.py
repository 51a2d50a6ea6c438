"""The safe forms of PostgreSQL's blocking schema changes, as migration operations.

Each keeps Django's project state exactly as its plain counterpart does (so
``makemigrations`` sees no change afterwards), is reversible, runs the plain operation on
other databases (SQLite), and on PostgreSQL takes only locks that let the application
keep reading and writing while the table is scanned. They belong in a migration with
``atomic = False``: PostgreSQL builds indexes concurrently only outside a transaction,
and a ``VALIDATE`` inside the transaction that added the constraint would keep its
ACCESS EXCLUSIVE lock for the whole scan. Each step, and each reverse, is idempotent, so a
run (or rollback) killed half-way is finished by the next one.

=====================  ==============================================================
operation              on PostgreSQL
=====================  ==============================================================
AddIndexSafely         DROP an INVALID leftover, CREATE INDEX CONCURRENTLY IF NOT EXISTS
AddUniqueSafely        CREATE UNIQUE INDEX CONCURRENTLY, ADD CONSTRAINT ... USING INDEX
AddCheckSafely         ADD CONSTRAINT ... CHECK NOT VALID, VALIDATE CONSTRAINT
AddForeignKeySafely    ADD COLUMN, index CONCURRENTLY, ADD FOREIGN KEY NOT VALID, VALIDATE
SetNotNullSafely       CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL, DROP CHECK
=====================  ==============================================================
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, IntegrityError, NotSupportedError
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.ddl_references import Statement
from django.db.migrations import operations
from django.db.migrations.operations.base import Operation
from django.db.models import CheckConstraint, Field, Model, UniqueConstraint

from migrator import concurrently
from migrator.exceptions import MigrationFailed, MigratorError

__all__ = [
    "AddCheckSafely",
    "AddForeignKeySafely",
    "AddIndexSafely",
    "AddUniqueSafely",
    "SetNotNullSafely",
]


def _postgres(schema_editor: BaseDatabaseSchemaEditor, operation: Operation) -> bool:
    """Whether to take the safe path; on PostgreSQL only outside a transaction."""
    if schema_editor.connection.vendor != "postgresql":
        return False
    if schema_editor.connection.in_atomic_block:
        raise NotSupportedError(
            f"{type(operation).__name__} cannot run inside a transaction on PostgreSQL. "
            "Set atomic = False on its migration."
        )
    return True


def _execute(schema_editor: BaseDatabaseSchemaEditor, sql: str | Statement) -> None:
    schema_editor.execute(str(sql), params=None)


def _probing(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    """Whether to look at the database first (not when only collecting SQL, ``--sql``)."""
    return not schema_editor.collect_sql


def _build_index(schema_editor: BaseDatabaseSchemaEditor, statement: Statement, name: str) -> None:
    """Build an index concurrently, after dropping the INVALID leftover of a killed build.

    A unique build that finds duplicates (rows the running code wrote meanwhile) leaves an
    INVALID index that, once ready, rejects the running code's duplicate writes while the
    migration is not applied: it is dropped then.
    """
    if _probing(schema_editor):
        concurrently.drop_invalid_index(schema_editor.connection, name)
    template = statement.template
    for plain in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
        if template.startswith(plain):
            head = template[len(plain) :].removeprefix("CONCURRENTLY ")
            statement.template = f"{plain}CONCURRENTLY IF NOT EXISTS {head}"
            break
    try:
        _execute(schema_editor, statement)
    except IntegrityError as exc:
        _drop_failed_build(schema_editor, name, exc)
        raise


def _drop_failed_build(
    schema_editor: BaseDatabaseSchemaEditor, name: str, error: IntegrityError
) -> None:
    """Drop the INVALID index a unique build stopped by duplicates left; if that fails too,
    MigrationFailed names the index, which rejects the running code's duplicate writes."""
    try:
        concurrently.drop_invalid_index(schema_editor.connection, name)
    except (DatabaseError, MigratorError) as exc:
        said = " ".join(str(error).split())
        raise MigrationFailed(
            f"Building the unique index {name!r} failed ({type(error).__name__}: {said}), and "
            f"dropping the INVALID index it left failed too ({type(exc).__name__}: {exc}). "
            "That index rejects the running code's duplicate writes until it is dropped: "
            f"run 'DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}' now, "
            "then fix the duplicates and run again."
        ) from exc


def _attach_unique(
    schema_editor: BaseDatabaseSchemaEditor, model: type[Model], name: str, deferrable: str = ""
) -> None:
    """Make the unique index ``name`` (built concurrently) a UNIQUE constraint: an instant."""
    table, quote = model._meta.db_table, schema_editor.quote_name
    if not _constraint_exists(schema_editor, table, name):
        _execute(
            schema_editor,
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} "
            f"UNIQUE USING INDEX {quote(name)}{deferrable}",
        )


def _constraint_exists(schema_editor: BaseDatabaseSchemaEditor, table: str, name: str) -> bool:
    if not _probing(schema_editor):
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
            [name, schema_editor.quote_name(table)],
        )
        return cursor.fetchone() is not None


def _add_not_valid(
    schema_editor: BaseDatabaseSchemaEditor, model: type[Model], name: str, sql: str
) -> None:
    """``ADD CONSTRAINT ... NOT VALID`` (a brief lock, no scan), then ``VALIDATE`` (no block).

    Rows that break it fail the migration; the NOT VALID constraint is dropped then, as it
    would reject the running code's writes while the migration is not applied.
    """
    table, quote = model._meta.db_table, schema_editor.quote_name
    if not _constraint_exists(schema_editor, table, name):
        _execute(schema_editor, f"{sql} NOT VALID")
    try:
        _execute(schema_editor, f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}")
    except IntegrityError:
        _execute(
            schema_editor, f"ALTER TABLE {quote(table)} DROP CONSTRAINT IF EXISTS {quote(name)}"
        )
        raise


class _SafelyOnPostgres:
    """Forwards: the plain operation off PostgreSQL, ``_safely()`` on it (non-atomic)."""

    atomic = False

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _postgres(schema_editor, self):
            self._safely(schema_editor, model)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddIndexSafely(_SafelyOnPostgres, operations.AddIndex):
    """``AddIndex`` built with ``CREATE INDEX CONCURRENTLY``: writes go on meanwhile.

    Lock: SHARE UPDATE EXCLUSIVE on the table (blocks other DDL and VACUUM, not reads or
    writes). Undone with ``DROP INDEX CONCURRENTLY``.
    """

    def _safely(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> None:
        statement = self.index.create_sql(model, schema_editor, concurrently=True)
        _build_index(schema_editor, statement, self.index.name)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _postgres(schema_editor, self):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        schema_editor.remove_index(model, self.index, concurrently=True)

    def describe(self) -> str:
        return f"{super().describe()} concurrently"


class _AddConstraintSafely(_SafelyOnPostgres, operations.AddConstraint):
    """Undone on PostgreSQL with ``DROP CONSTRAINT IF EXISTS``: a rollback killed after the
    drop committed, before its record, is finished by the next one."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _postgres(schema_editor, self):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        statement = self.constraint.remove_sql(model, schema_editor)  # an index: IF EXISTS
        statement.template = statement.template.replace(
            " DROP CONSTRAINT ", " DROP CONSTRAINT IF EXISTS "
        )
        _execute(schema_editor, statement)


class AddUniqueSafely(_AddConstraintSafely):
    """``AddConstraint(UniqueConstraint)`` whose index is built concurrently first.

    Lock: SHARE UPDATE EXCLUSIVE while the unique index builds, then ACCESS EXCLUSIVE for
    an instant to attach it (``ADD CONSTRAINT ... UNIQUE USING INDEX``). A constraint
    with a condition, expressions, INCLUDE or opclasses is a unique index in Django too:
    it stops after the build.
    """

    def __init__(self, model_name: str, constraint: UniqueConstraint) -> None:
        if not isinstance(constraint, UniqueConstraint):
            raise TypeError(f"AddUniqueSafely needs a UniqueConstraint, not {constraint!r}.")
        super().__init__(model_name, constraint)

    def _safely(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> None:
        constraint = self.constraint
        index = constraint.create_sql(model, schema_editor)
        index_only = index.template == schema_editor.sql_create_unique_index
        index.template = schema_editor.sql_create_unique_index
        _build_index(schema_editor, index, constraint.name)
        if not index_only:
            deferrable = schema_editor._deferrable_constraint_sql(constraint.deferrable)
            _attach_unique(schema_editor, model, constraint.name, deferrable)

    def describe(self) -> str:
        return f"{super().describe()}, its unique index built concurrently"


class AddCheckSafely(_AddConstraintSafely):
    """``AddConstraint(CheckConstraint)`` added ``NOT VALID``, then validated.

    Lock: ACCESS EXCLUSIVE for an instant to add it, then SHARE UPDATE EXCLUSIVE while
    ``VALIDATE CONSTRAINT`` checks every row (reads and writes go on; new rows are
    checked from the moment it is added).
    """

    def __init__(self, model_name: str, constraint: CheckConstraint) -> None:
        if not isinstance(constraint, CheckConstraint):
            raise TypeError(f"AddCheckSafely needs a CheckConstraint, not {constraint!r}.")
        super().__init__(model_name, constraint)

    def _safely(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> None:
        sql = str(self.constraint.create_sql(model, schema_editor))
        _add_not_valid(schema_editor, model, self.constraint.name, sql)

    def describe(self) -> str:
        return f"{super().describe()}, NOT VALID then validated"


class AddForeignKeySafely(_SafelyOnPostgres, operations.AddField):
    """``AddField`` of a ``ForeignKey`` (or ``OneToOneField``) whose indexes and constraints
    do not block writes.

    The column is added without them (an instant: nullable, or with a constant default),
    its indexes are built concurrently (a unique field's then attached as its UNIQUE
    constraint, an instant), the foreign key added ``NOT VALID`` (an instant, SHARE ROW
    EXCLUSIVE on both tables) and validated in its own statement (SHARE UPDATE EXCLUSIVE
    on the table, ROW SHARE on the referenced one).
    """

    def _safely(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> None:
        field = model._meta.get_field(self.name)
        if not _has_column(schema_editor, model, field.column):
            with _bare(field):
                schema_editor.add_field(model, field)
        if field.unique:
            index = schema_editor._create_unique_sql(model, [field])
            index.template = schema_editor.sql_create_unique_index
            name = _unquoted(index.parts["name"])
            _build_index(schema_editor, index, name)
            _attach_unique(schema_editor, model, name)
        elif field.db_index:
            statement = schema_editor._create_index_sql(model, fields=[field], concurrently=True)
            _build_index(schema_editor, statement, _unquoted(statement.parts["name"]))
        if field.db_index or field.unique:  # varchar_pattern_ops beside a character key
            like = schema_editor._create_like_index_sql(model, field)
            if like is not None:
                _build_index(schema_editor, like, _unquoted(like.parts["name"]))
        if field.db_constraint:
            fk = schema_editor._create_fk_sql(model, field, "_fk_%(to_table)s_%(to_column)s")
            _add_not_valid(schema_editor, model, _unquoted(fk.parts["name"]), str(fk))

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        """Django's ``RemoveField``; nothing when the column is gone already (a rollback
        killed after the drop committed, before its record)."""
        model = from_state.apps.get_model(app_label, self.model_name)
        if (
            self.allow_migrate_model(schema_editor.connection.alias, model)
            and _postgres(schema_editor, self)
            and _probing(schema_editor)
            and not _has_column(schema_editor, model, model._meta.get_field(self.name).column)
        ):
            return
        super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{super().describe()}, its index and constraint added without blocking writes"


@contextmanager
def _bare(field: Field) -> Iterator[None]:
    """The field of a throwaway rendered model as a column alone: no index, unique or key."""
    saved = field.db_index, field._unique, field.db_constraint
    field.db_index = field._unique = field.db_constraint = False
    vars(field).pop("unique", None)  # cached from _unique by recent Django versions
    try:
        yield
    finally:
        field.db_index, field._unique, field.db_constraint = saved
        vars(field).pop("unique", None)


def _has_column(schema_editor: BaseDatabaseSchemaEditor, model: type[Model], column: str) -> bool:
    if not _probing(schema_editor):
        return False
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, model._meta.db_table)
    return any(info.name == column for info in description)


def _unquoted(name: Any) -> str:
    return str(name).strip('"')


class SetNotNullSafely(Operation):
    """Make a nullable column NOT NULL without scanning under an ACCESS EXCLUSIVE lock.

    ``CHECK (col IS NOT NULL) NOT VALID`` (an instant), ``VALIDATE`` (SHARE UPDATE
    EXCLUSIVE while it scans), ``SET NOT NULL`` (ACCESS EXCLUSIVE for an instant:
    PostgreSQL 12+ skips the scan when a valid check proves it), then the check is
    dropped. The field in the project state becomes ``null=False``, nothing else changes.
    """

    atomic = False
    reversible = True

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__qualname__, [], {"model_name": self.model_name, "name": self.name})

    def state_forwards(self, app_label: str, state: Any) -> None:
        field = state.models[app_label, self.model_name_lower].fields[self.name]
        name, path, args, kwargs = field.deconstruct()
        not_null = type(field)(*args, **{**kwargs, "null": False})
        state.alter_field(app_label, self.model_name_lower, self.name, not_null, True)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._alter(app_label, schema_editor, from_state, to_state, forwards=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._alter(app_label, schema_editor, from_state, to_state, forwards=False)

    def _alter(self, app_label, schema_editor, from_state, to_state, *, forwards: bool) -> None:
        from_model = from_state.apps.get_model(app_label, self.model_name)
        to_model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, to_model):
            return
        old, new = from_model._meta.get_field(self.name), to_model._meta.get_field(self.name)
        if not forwards or not _postgres(schema_editor, self):
            schema_editor.alter_field(from_model, old, new)
            return
        table, quote = to_model._meta.db_table, schema_editor.quote_name
        check = schema_editor._create_index_name(table, [new.column], suffix="_notnull")
        sql = (
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(check)} "
            f"CHECK ({quote(new.column)} IS NOT NULL)"
        )
        _add_not_valid(schema_editor, to_model, check, sql)
        _execute(
            schema_editor,
            f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(new.column)} SET NOT NULL",
        )
        _execute(
            schema_editor, f"ALTER TABLE {quote(table)} DROP CONSTRAINT IF EXISTS {quote(check)}"
        )

    def describe(self) -> str:
        return f"Set {self.model_name}.{self.name} NOT NULL, validated without blocking writes"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name_lower}_{self.name.lower()}_not_null"
