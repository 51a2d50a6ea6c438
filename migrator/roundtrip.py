"""Schema snapshots and the up/down/up round trip of every migration, on a throwaway database.

``testmigrations`` creates the test database of an alias the way Django's test runner
names and creates it (never touching the configured database), then walks the
migration graph forward one migration at a time. After each migration it takes a
snapshot of the schema, unapplies the migration, checks that the schema is exactly
the snapshot from before it, applies it again and checks that the schema is exactly
the snapshot from after it.

A snapshot is what Django's introspection sees: for every table, its columns (type,
nullability, default, collation, comment), and its constraints and indexes (primary
key, unique, check, foreign key, index; columns, orders, type, name). Introspecting
every table after every step would cost O(tables) introspection calls per step; a
cheap per-vendor signature of each table (one catalogue query per snapshot) says
which tables changed, and only those are introspected again.
"""

import ast
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.core.management.sql import emit_pre_migrate_signal
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunPython, SeparateDatabaseAndState
from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
from django.db.migrations.state import ProjectState

from migrator import compat, integrity, locking, packages, planning
from migrator.conf import get_settings
from migrator.exceptions import (
    MIGRATION_CODE_ERRORS,
    ConfirmationRequired,
    IntegrityViolation,
    InvalidRequest,
    MigrationFailed,
    MigratorError,
    RollbackRefused,
)
from migrator.executor import RecordingExecutor
from migrator.types import (
    ConfirmCallback,
    MigrationKey,
    MigrationPlan,
    ProgressCallback,
    ProgressEvent,
    ignore_progress,
    migration_label,
)

# Statuses of one migration's round trip.
OK = "ok"
DIFFERENCES = "differences"
IRREVERSIBLE = "irreversible"
FAILED = "failed"
STATUSES = (OK, DIFFERENCES, IRREVERSIBLE, FAILED)

# ---------------------------------------------------------------------------
# Snapshots


@dataclass(frozen=True)
class Column:
    """One column as introspection describes it; ``type_key`` is compared, ``type`` shown."""

    name: str
    type: str
    type_key: tuple[Any, ...]
    null: bool
    default: str | None
    collation: str | None = None
    comment: str | None = None
    identity: bool = False


@dataclass(frozen=True)
class Constraint:
    """A constraint or index of a table, from ``introspection.get_constraints()``."""

    name: str
    kind: str  # primary key | unique constraint | unique index | index | check | foreign key
    columns: tuple[str, ...]
    details: tuple[tuple[str, Any], ...]  # target, type, orders, definition, options
    generated_name: bool  # a name the backend invents (SQLite), compared by content

    @property
    def content(self) -> tuple[Any, ...]:
        return (self.kind, self.columns, self.details)

    @property
    def compared(self) -> tuple[Any, ...]:
        """What must match: an invented name is renumbered when a table is remade, so not it."""
        return self.content if self.generated_name else (self.name, *self.content)

    def describe(self, *, with_name: bool = True, with_details: bool = False) -> str:
        text = self.kind
        if with_name and not self.generated_name:
            text += f" {self.name!r}"
        if self.columns:
            text += f" on ({', '.join(self.columns)})"
        extra = dict(self.details)
        if extra.get("target"):
            text += f" to {'.'.join(extra['target'])}"
        shown = {k: v for k, v in extra.items() if k != "target" and v not in (None, "", ())}
        if with_details and shown:
            text += " [" + ", ".join(f"{k}={_short(v)}" for k, v in sorted(shown.items())) + "]"
        return text


@dataclass(frozen=True)
class TableSnapshot:
    name: str
    kind: str  # 't' table, 'v' view, ... as the vendor's catalogue says
    columns: Mapping[str, Column]
    constraints: tuple[Constraint, ...]


class _Tables(Mapping[str, TableSnapshot]):
    """A snapshot's tables, some of them described only when first read (``deferred``)."""

    def __init__(
        self, ready: dict[str, TableSnapshot], deferred: dict[str, Callable[[], TableSnapshot]]
    ) -> None:
        self._ready, self._deferred = ready, deferred

    def __getitem__(self, name: str) -> TableSnapshot:
        if name not in self._ready:
            self._ready[name] = self._deferred.pop(name)()
        return self._ready[name]

    def __contains__(self, name: object) -> bool:
        return name in self._ready or name in self._deferred

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._ready, *self._deferred}))

    def __len__(self) -> int:
        return len(self._ready) + len(self._deferred)


@dataclass(frozen=True)
class SchemaSnapshot:
    """Every table of a database; ``signatures`` say cheaply which tables changed."""

    tables: Mapping[str, TableSnapshot]
    signatures: Mapping[str, str | None]  # None: the vendor has no signature query


def take_snapshot(connection: BaseDatabaseWrapper, *known: SchemaSnapshot) -> SchemaSnapshot:
    """Snapshot the schema, reusing from ``known`` snapshots every table whose signature matches.

    Equal signatures mean equal catalogue entries, so introspection would see the same.
    On SQLite a table's signature is its SQL, which is all that introspection reads: a
    table is described only when a comparison needs it, from that SQL replayed into a
    scratch in-memory database (the live schema may have moved on by then). So a
    snapshot costs one catalogue query, and only tables that differ are introspected.
    """
    with connection.cursor() as cursor:
        listed = _SIGNATURES.get(connection.vendor, _generic_signatures)(connection, cursor)
        ready: dict[str, TableSnapshot] = {}
        deferred: dict[str, Callable[[], TableSnapshot]] = {}
        signatures: dict[str, str | None] = {}
        for name, (kind, signature) in sorted(listed.items()):
            signatures[name] = signature
            if connection.vendor == "sqlite" and kind == "t":
                deferred[name] = partial(_replayed_sqlite_table, name, kind, signature)
                continue
            reusable = (
                snapshot.tables[name]
                for snapshot in known
                if signature is not None
                and name in snapshot.tables
                and snapshot.signatures.get(name) == signature
            )
            ready[name] = next(reusable, None) or _introspect_table(connection, cursor, name, kind)
    return SchemaSnapshot(tables=_Tables(ready, deferred), signatures=signatures)


@lru_cache(maxsize=1024)
def _replayed_sqlite_table(name: str, kind: str, signature: str) -> TableSnapshot:
    """Introspect a SQLite table as its signature's SQL (table, then indexes) creates it."""
    statements = sorted(ast.literal_eval(signature), key=lambda row: row[0] != "table")
    with _scratch_sqlite() as scratch, scratch.cursor() as cursor:
        for row_kind, _, sql in statements:
            if sql and row_kind in {"table", "index"}:  # autoindexes come with the table
                cursor.execute(sql)
        return _introspect_table(scratch, cursor, name, kind)


_SCRATCH_ALIAS = "migrator-snapshots"


@contextmanager
def _scratch_sqlite() -> Iterator[BaseDatabaseWrapper]:
    """A new in-memory SQLite database, registered under an alias of its own while in use
    (Django's feature probes look their connection up by alias)."""
    from django.db.backends.sqlite3.base import DatabaseWrapper

    settings_dict = connections.configure_settings(
        {DEFAULT_DB_ALIAS: {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )[DEFAULT_DB_ALIAS]  # Django's defaults for every key
    scratch = DatabaseWrapper(settings_dict, alias=_SCRATCH_ALIAS)
    connections[_SCRATCH_ALIAS] = scratch
    try:
        yield scratch
    finally:
        scratch.close()
        del connections[_SCRATCH_ALIAS]


def compare_snapshots(
    expected: SchemaSnapshot,
    actual: SchemaSnapshot,
    *,
    now: str = "after round trip",
    then: str = "before",
) -> list[str]:
    """Every difference between two snapshots, one line each: ``what <now>, what <then>``."""
    differences = []
    for name in sorted(set(expected.tables) | set(actual.tables)):
        signature = expected.signatures.get(name)
        if signature is not None and signature == actual.signatures.get(name):
            continue  # equal catalogue entries: nothing to introspect
        old, new = expected.tables.get(name), actual.tables.get(name)
        if old is new:
            continue
        if new is None:
            differences.append(f"{name}: missing {now}, present {then}")
        elif old is None:
            differences.append(f"{name}: present {now}, absent {then}")
        elif old != new:
            differences.extend(_compare_tables(old, new, now=now, then=then))
    return differences


def _compare_tables(old: TableSnapshot, new: TableSnapshot, *, now: str, then: str) -> list[str]:
    lines = []
    if old.kind != new.kind:
        lines.append(f"{old.name}: kind {new.kind!r} {now}, {old.kind!r} {then}")
    for column in sorted(set(old.columns) | set(new.columns)):
        before, after = old.columns.get(column), new.columns.get(column)
        where = f"{old.name}.{column}"
        if after is None:
            lines.append(f"{where}: missing {now}, present {then}")
        elif before is None:
            lines.append(f"{where}: present {now}, absent {then}")
        elif before != after:
            lines.extend(f"{where}: {line}" for line in _compare_columns(before, after, now, then))
    lines.extend(
        f"{old.name}: {line}"
        for line in _compare_constraints(old.constraints, new.constraints, now, then)
    )
    return lines


def _compare_columns(before: Column, after: Column, now: str, then: str) -> list[str]:
    lines = []
    if before.type_key != after.type_key:
        shown = (after.type, before.type)
        if after.type == before.type:
            shown = (repr(after.type_key), repr(before.type_key))
        lines.append(f"type {shown[0]} {now}, {shown[1]} {then}")
    if before.null != after.null:
        lines.append(f"{_null(after.null)} {now}, {_null(before.null)} {then}")
    if before.default != after.default:
        lines.append(f"{_default(after.default)} {now}, {_default(before.default)} {then}")
    for attribute in ("collation", "comment"):
        old_value, new_value = getattr(before, attribute), getattr(after, attribute)
        if old_value != new_value:
            lines.append(
                f"{attribute} {_short(new_value)} {now}, {attribute} {_short(old_value)} {then}"
            )
    if before.identity != after.identity:
        lines.append(
            f"{'identity' if after.identity else 'not identity'} {now}, "
            f"{'identity' if before.identity else 'not identity'} {then}"
        )
    return lines


def _compare_constraints(
    old: tuple[Constraint, ...], new: tuple[Constraint, ...], now: str, then: str
) -> list[str]:
    old_keyed, new_keyed = _keyed(old), _keyed(new)
    lines = []
    missing = [old_keyed[key] for key in old_keyed if key not in new_keyed]
    added = [new_keyed[key] for key in new_keyed if key not in old_keyed]
    for key in old_keyed.keys() & new_keyed.keys():
        before, after = old_keyed[key], new_keyed[key]
        if before.compared != after.compared:
            details = before.kind == after.kind and before.columns == after.columns
            lines.append(
                f"{before.name!r} is {after.describe(with_name=False, with_details=details)} "
                f"{now}, {before.describe(with_name=False, with_details=details)} {then}"
            )
    for constraint in list(missing):
        renamed = next((c for c in added if c.content == constraint.content), None)
        if renamed is not None:
            missing.remove(constraint)
            added.remove(renamed)
            lines.append(
                f"{constraint.describe(with_name=False)} named {renamed.name!r} {now}, "
                f"{constraint.name!r} {then}"
            )
    lines.extend(f"{c.describe()} missing {now}, present {then}" for c in missing)
    lines.extend(f"{c.describe()} present {now}, absent {then}" for c in added)
    return sorted(lines)


def _keyed(constraints: Iterable[Constraint]) -> dict[Any, Constraint]:
    """Named constraints by name; constraints with invented names by their content."""
    keyed: dict[Any, Constraint] = {}
    for constraint in constraints:
        key: Any = constraint.content if constraint.generated_name else constraint.name
        while key in keyed:  # the same content twice: keep both
            key = (key, "again")
        keyed[key] = constraint
    return keyed


def _introspect_table(
    connection: BaseDatabaseWrapper, cursor: Any, table: str, kind: str
) -> TableSnapshot:
    introspection = connection.introspection
    columns = {}
    for info in introspection.get_table_description(cursor, table):
        type_name, type_key = _column_type(connection, info)
        columns[info.name] = Column(
            name=info.name,
            type=type_name,
            type_key=type_key,
            null=bool(info.null_ok),
            default=None if info.default is None else str(info.default),
            collation=getattr(info, "collation", None),
            comment=getattr(info, "comment", None),
            identity=bool(getattr(info, "is_autofield", False)),
        )
    editor = connection.schema_editor()  # only for its naming of constraints
    constraints = tuple(
        _constraint(name, info, _invented_name(editor, table, name, info))
        for name, info in sorted(introspection.get_constraints(cursor, table).items())
    )
    return TableSnapshot(name=table, kind=kind, columns=columns, constraints=constraints)


def _column_type(connection: BaseDatabaseWrapper, info: Any) -> tuple[str, tuple[Any, ...]]:
    code = info.type_code
    key = (code, info.internal_size, info.precision, info.scale)
    if isinstance(code, str):  # SQLite: the declared type, e.g. varchar(254)
        return code.lower(), (code.lower(), *key[1:])
    try:
        name = connection.introspection.get_field_type(code, info)
    except KeyError:
        name = f"type {code}"
    if info.precision is not None and info.scale is not None:
        name += f"({info.precision},{info.scale})"
    elif name == "CharField" and info.internal_size and info.internal_size > 0:
        name += f"({info.internal_size})"
    return name, key


def _constraint(name: str, info: Mapping[str, Any], generated: bool) -> Constraint:
    if info.get("primary_key"):
        kind = "primary key"
    elif info.get("foreign_key"):
        kind = "foreign key"
    elif info.get("check"):
        kind = "check"
    elif info.get("index"):
        kind = "unique index" if info.get("unique") else "index"
    elif info.get("unique"):
        kind = "unique constraint"
    else:
        kind = "constraint"
    details = (
        ("target", tuple(info["foreign_key"]) if info.get("foreign_key") else ()),
        ("type", info.get("type") or ""),
        ("orders", tuple(info.get("orders") or ())),
        ("definition", info.get("definition") or ""),
        ("options", _freeze(info.get("options"))),
    )
    return Constraint(
        name=name,
        kind=kind,
        columns=tuple(column for column in info.get("columns") or () if column is not None),
        details=details,
        generated_name=generated,
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _null(null: bool) -> str:
    return "NULL" if null else "NOT NULL"


def _default(default: str | None) -> str:
    return "no default" if default is None else f"default {default}"


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    return repr(value) if not isinstance(value, tuple) else f"({', '.join(map(str, value))})"


# Per-vendor signatures: {table: (kind, signature)} in one catalogue query.

SQLITE_SIGNATURES = """
    SELECT tbl_name, type, name, sql FROM sqlite_master
    WHERE name != 'sqlite_sequence' ORDER BY tbl_name, type, name
"""

POSTGRESQL_SIGNATURES = """
    SELECT c.relname, c.relkind, md5(concat_ws(' | ',
        (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                     a.attnotnull, a.attidentity, a.attgenerated,
                                     pg_get_expr(d.adbin, d.adrelid), a.attcollation,
                                     col_description(c.oid, a.attnum)), ', ' ORDER BY a.attnum)
         FROM pg_attribute a
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(concat_ws(' ', co.conname, pg_get_constraintdef(co.oid)),
                           ', ' ORDER BY co.conname)
         FROM pg_constraint co WHERE co.conrelid = c.oid),
        (SELECT string_agg(concat_ws(' ', pg_get_indexdef(i.indexrelid), ic.reloptions),
                           ', ' ORDER BY ic.relname)
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
        CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
        c.reloptions
    ))
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v')
        AND n.nspname NOT IN ('pg_catalog', 'pg_toast')
        AND pg_catalog.pg_table_is_visible(c.oid)
"""


def _sqlite_signatures(connection: BaseDatabaseWrapper, cursor: Any) -> dict[str, tuple]:
    cursor.execute(SQLITE_SIGNATURES)
    rows: dict[str, list[tuple]] = {}
    kinds: dict[str, str] = {}
    for table, kind, name, sql in cursor.fetchall():
        rows.setdefault(table, []).append((kind, name, sql))
        if name == table and kind in {"table", "view"}:
            kinds[table] = kind[0]
    return {table: (kind, repr(rows[table])) for table, kind in kinds.items()}


def _postgresql_signatures(connection: BaseDatabaseWrapper, cursor: Any) -> dict[str, tuple]:
    cursor.execute(POSTGRESQL_SIGNATURES)
    kinds = {"r": "t", "p": "p", "v": "v", "m": "m", "f": "f"}
    return {name: (kinds[kind], signature) for name, kind, signature in cursor.fetchall()}


def _generic_signatures(connection: BaseDatabaseWrapper, cursor: Any) -> dict[str, tuple]:
    """No cheap signature: every table is introspected in every snapshot."""
    return {
        info.name: (info.type, None) for info in connection.introspection.get_table_list(cursor)
    }


_SIGNATURES = {"sqlite": _sqlite_signatures, "postgresql": _postgresql_signatures}

# Names that SQLite's introspection invents for nameless constraints; they move when
# columns move.
_SQLITE_INVENTED = re.compile(r"__primary__|__unnamed_constraint_\d+__|fk_\d+")
# Suffixes of the names Django's schema editor derives from a table and its columns.
_DJANGO_SUFFIXES = ("", "_uniq", "_like", "_check")
DIGEST_LENGTH = 8  # of names_digest(..., length=8), the hash in a name Django derives


def _invented_name(editor: Any, table: str, name: str, info: Mapping[str, Any]) -> bool:
    """Whether nobody chose ``name``: SQLite's placeholders, PostgreSQL's names for inline
    constraints (``<table>_<column>_key``) and the names Django's schema editor derives
    for a field's unique, index, check and foreign key constraints. Django finds those by
    their columns, never by name, and a remade table or a field altered back renames them.
    """
    vendor = editor.connection.vendor
    if vendor == "sqlite" and _SQLITE_INVENTED.fullmatch(name):
        return True
    columns = [column for column in info.get("columns") or () if column is not None]
    suffixes = list(_DJANGO_SUFFIXES)
    if info.get("foreign_key"):
        suffixes.append("_fk_{}_{}".format(*info["foreign_key"]))
    joined = "_".join(columns)
    # Derived from this table's name, or from the name it had when they were made (a
    # renamed model's indexes keep theirs; a round trip derives them again).
    tables = {table, *_earlier_tables(name, joined, suffixes)}
    candidates = {
        editor._create_index_name(earlier, columns, suffix=s)
        for earlier in tables
        for s in suffixes
    }
    if vendor == "postgresql":
        return (
            name in candidates
            or re.fullmatch(rf".+_pkey|.+_{re.escape(joined)}_(key|fkey|check)", name) is not None
        )
    return name in candidates


def _earlier_tables(name: str, joined: str, suffixes: list[str]) -> set[str]:
    """The table names ``name`` may have been derived from, as ``<table>_<columns>_<hash>
    <suffix>`` (whether the hash is of that table and those columns, the caller checks)."""
    tables = set()
    for suffix in suffixes:
        if suffix and not name.endswith(suffix):
            continue
        head = name.removesuffix(suffix) if suffix else name
        derived, hashed = head[: -DIGEST_LENGTH - 1], head[-DIGEST_LENGTH - 1 :]
        table, separator, rest = derived.rpartition(f"_{joined}")
        if separator and not rest and table and hashed.startswith("_"):
            tables.add(table)
    return tables


# ---------------------------------------------------------------------------
# The throwaway database


@contextmanager
def throwaway_database(
    connection: BaseDatabaseWrapper,
    *,
    keepdb: bool = False,
    interactive: bool = False,
    confirm: ConfirmCallback | None = None,
    progress: ProgressCallback = ignore_progress,
) -> Iterator[str]:
    """Point ``connection`` at its alias's test database, created as Django's runner does.

    The configured database is never opened. Afterwards the connection's settings are
    restored and the test database is destroyed, unless ``keepdb``.
    """
    if connection.in_atomic_block:
        raise InvalidRequest(
            f"Database {connection.alias!r} is inside a transaction; run outside it."
        )
    creation = connection.creation
    original_name = connection.settings_dict["NAME"]
    test_name = creation._get_test_db_name()
    if _same_database(connection, test_name, original_name):
        raise InvalidRequest(
            f"The test database of {connection.alias!r} is the configured database itself; "
            "set DATABASES[...]['TEST']['NAME'] to another name."
        )
    other = _configured_as(connection, test_name)
    if other is not None:
        raise InvalidRequest(
            f"The test database of {connection.alias!r} ({str(test_name)!r}) is the database "
            f"that alias {other!r} is configured with; set DATABASES[{connection.alias!r}]"
            "['TEST']['NAME'] to another name."
        )
    with locking.throwaway_database_lock(
        connection,
        str(test_name),
        timeout=get_settings().run_lock_timeout,
        on_wait=lambda holder: progress(
            ProgressEvent(
                "test_database",
                message=f"Waiting for {holder.describe() if holder else 'another run'}, "
                f"which uses test database {str(test_name)!r}...",
            )
        ),
    ):
        yield from _created(connection, test_name, keepdb, interactive, confirm, progress)


def _created(
    connection: BaseDatabaseWrapper,
    test_name: Any,
    keepdb: bool,
    interactive: bool,
    confirm: ConfirmCallback | None,
    progress: ProgressCallback,
) -> Iterator[str]:
    """Create the test database, point ``connection`` at it; afterwards point it back and
    destroy it (unless ``keepdb``, or it is already gone)."""
    creation = connection.creation
    original_name = connection.settings_dict["NAME"]
    autoclobber = _may_replace(connection, test_name, keepdb, interactive, confirm)
    action = "Using existing" if keepdb else "Creating"
    progress(
        ProgressEvent(
            "test_database",
            message=f"{action} test database {str(test_name)!r} for alias {connection.alias!r}...",
        )
    )
    connection.close()
    try:
        creation._create_test_db(verbosity=0, autoclobber=autoclobber, keepdb=keepdb)
    except SystemExit as exc:  # Django's creation exits after logging the reason
        raise MigratorError(
            f"Could not create the test database {str(test_name)!r}; see the error above."
        ) from exc
    configured = settings.DATABASES.get(connection.alias)
    _set_name(connection, configured, test_name)
    try:
        connection.prepare_database()
        yield str(test_name)
    finally:
        _set_name(connection, configured, original_name)
        connection.close()  # also really closes an in-memory SQLite test database
        action = "Keeping" if keepdb else "Destroying"
        progress(ProgressEvent("test_database", message=f"{action} test database..."))
        exists = _TEST_DB_EXISTS.get(connection.vendor)
        if not keepdb and (exists is None or exists(connection, str(test_name))):
            creation._destroy_test_db(test_name, verbosity=0)


def database_identity(connection: BaseDatabaseWrapper) -> Any:
    """What tells this database from one made again under its name; None when it is gone."""
    if connection.vendor == "postgresql":
        connection.close()  # a connection to a dropped database is dead: ask anew
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
                return cursor.fetchone()[0]
        except DatabaseError:
            return None
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and not connection.creation.is_in_memory_db(name):
        connection.ensure_connection()  # SQLite creates the file on the first connection
        try:
            status = os.stat(name)
        except FileNotFoundError:
            return None
        return (status.st_dev, status.st_ino)
    return name


def _still_there(connection: BaseDatabaseWrapper, identity: Any, test_name: str) -> None:
    """Refuse to report results from a test database that another process took away."""
    if database_identity(connection) != identity:
        raise MigratorError(
            f"Test database {test_name!r} was dropped or replaced by another process during "
            "the run; no result is reported. Run testmigrations again."
        )


def _same_database(connection: BaseDatabaseWrapper, one: Any, other: Any) -> bool:
    """Whether two NAMEs are one database (SQLite: one file, however the path is spelled)."""
    if connection.vendor == "sqlite" and not connection.creation.is_in_memory_db(str(one)):
        return os.path.realpath(one) == os.path.realpath(other)
    return str(one) == str(other)


def _configured_as(connection: BaseDatabaseWrapper, test_name: Any) -> str | None:
    """Another alias whose configured database ``test_name`` is, on the server (or, for
    SQLite, the file) where the test database would be made: replacing it loses its data."""
    server = _server(connection.settings_dict)
    for alias in connections:
        configured = connections[alias]
        if alias == connection.alias or configured.vendor != connection.vendor:
            continue
        if connection.vendor == "sqlite":
            if _same_database(connection, test_name, configured.settings_dict["NAME"]):
                return alias
        elif _server(configured.settings_dict) == server and (
            str(configured.settings_dict["NAME"]) == str(test_name)
        ):
            return alias
    return None


def _server(settings_dict: dict[str, Any]) -> tuple[str, str]:
    return str(settings_dict.get("HOST") or ""), str(settings_dict.get("PORT") or "")


def _set_name(connection: BaseDatabaseWrapper, configured: dict | None, name: Any) -> None:
    connection.close()
    connection.settings_dict["NAME"] = name
    if configured is not None and configured is not connection.settings_dict:
        configured["NAME"] = name


def _may_replace(
    connection: BaseDatabaseWrapper,
    test_name: str,
    keepdb: bool,
    interactive: bool,
    confirm: ConfirmCallback | None,
) -> bool:
    """Whether an existing test database may be deleted; asks or refuses, never guesses."""
    if keepdb or not interactive:
        return True
    exists = _TEST_DB_EXISTS.get(connection.vendor)
    if exists is None:
        return False  # Django's own prompt decides
    if not exists(connection, test_name):
        return True
    question = f"Test database {test_name!r} for alias {connection.alias!r} already exists."
    if confirm is None:
        raise ConfirmationRequired(
            f"{question} No terminal to ask on; pass --noinput to replace it "
            "or --keepdb to reuse it."
        )
    if not confirm(f"{question} Delete it?", "yes"):
        raise ConfirmationRequired("Cancelled; the test database was left as it was.")
    return True


def _sqlite_test_db_exists(connection: BaseDatabaseWrapper, name: str) -> bool:
    return not connection.creation.is_in_memory_db(name) and os.path.exists(name)


def _postgresql_test_db_exists(connection: BaseDatabaseWrapper, name: str) -> bool:
    with connection.creation._nodb_cursor() as cursor:
        return connection.creation._database_exists(cursor, name)


_TEST_DB_EXISTS = {"sqlite": _sqlite_test_db_exists, "postgresql": _postgresql_test_db_exists}

# ---------------------------------------------------------------------------
# The walk


@dataclass
class MigrationResult:
    """How one migration's round trip went (or its single apply, when that failed)."""

    migration: str
    status: str  # ok | differences | irreversible | failed
    differences: list[str] = field(default_factory=list)
    error: str = ""
    phase: str = ""  # where it failed: apply | unapply | reapply
    irreversible_operations: list[str] = field(default_factory=list)
    duration: float = 0.0
    round_trip: bool = True  # False: a migration to apply once, whose apply failed
    note: str = ""  # how the walk went on after a failure

    def as_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "status": self.status,
            "differences": self.differences,
            "error": self.error,
            "phase": self.phase,
            "irreversible_operations": self.irreversible_operations,
            "duration": round(self.duration, 6),
            "round_trip": self.round_trip,
            "note": self.note,
        }


@dataclass(frozen=True)
class NotReached:
    """A migration that the walk could not test or apply after a failure, and why."""

    migration: str
    reason: str
    round_trip: bool  # False: it was to be applied once

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "reason": self.reason, "round_trip": self.round_trip}


@dataclass
class RoundTripReport:
    """What ``testmigrations`` found; ``as_dict()`` is the ``--json`` document."""

    database: str
    test_database: str = ""
    vendor: str = ""
    strict: bool = False
    since: str | None = None
    planned_round_trips: int = 0
    planned_applied_once: int = 0
    results: list[MigrationResult] = field(default_factory=list)
    base: list[str] = field(default_factory=list)  # applied once, without a round trip
    not_reached: list[NotReached] = field(default_factory=list)
    model_changes: list[str] = field(default_factory=list)
    # In installed packages: not the project's to migrate, so a warning (THIRD_PARTY_STRICT:
    # in model_changes, an error), as verifymigrations' W002.
    package_model_changes: list[str] = field(default_factory=list)

    def with_status(self, status: str, *, round_trip: bool = True) -> list[MigrationResult]:
        return [r for r in self.results if r.status == status and r.round_trip == round_trip]

    def error(self) -> MigratorError | None:
        """The exception that carries this report's exit code, or None when all passed."""
        failed = [result for result in self.results if result.status == FAILED]
        if failed:
            return MigrationFailed(
                f"{len(failed)} migration(s) failed their round trip: {_labels(failed)}."
            )
        differing = self.with_status(DIFFERENCES)
        if differing:
            return IntegrityViolation(
                f"{len(differing)} migration(s) do not restore the schema: {_labels(differing)}."
            )
        if self.model_changes:
            return IntegrityViolation(
                "Models have changes that are not in a migration; "
                "run 'python manage.py makemigrations'."
            )
        irreversible = self.with_status(IRREVERSIBLE)
        if self.strict and irreversible:
            return RollbackRefused(
                f"--strict: {len(irreversible)} irreversible migration(s): {_labels(irreversible)}."
            )
        return None

    @property
    def exit_code(self) -> int:
        error = self.error()
        return 0 if error is None else error.exit_code

    def counts(self) -> dict[str, int]:
        """Round trips by outcome; they add up to ``planned_round_trips``."""
        counts = {status: len(self.with_status(status)) for status in STATUSES}
        counts["not_reached"] = sum(1 for skipped in self.not_reached if skipped.round_trip)
        return counts

    def applied_once_counts(self) -> dict[str, int]:
        """Migrations to apply once, by outcome; they add up to ``planned_applied_once``."""
        return {
            "applied": len(self.base),
            FAILED: len(self.with_status(FAILED, round_trip=False)),
            "not_reached": sum(1 for skipped in self.not_reached if not skipped.round_trip),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": "testmigrations",
            "database": self.database,
            "test_database": self.test_database,
            "vendor": self.vendor,
            "strict": self.strict,
            "since": self.since,
            "exit_code": self.exit_code,
            "planned": {
                "round_trips": self.planned_round_trips,
                "applied_once": self.planned_applied_once,
            },
            "counts": self.counts(),
            "applied_once_counts": self.applied_once_counts(),
            "migrations": [result.as_dict() for result in self.results],
            "base": self.base,
            "not_reached": [skipped.as_dict() for skipped in self.not_reached],
            "model_changes": self.model_changes,
            "package_model_changes": self.package_model_changes,
        }


def _labels(results: list[MigrationResult]) -> str:
    return ", ".join(result.migration for result in results)


def check_round_trips(
    app_labels: Iterable[str] = (),
    *,
    database: str = DEFAULT_DB_ALIAS,
    since: str | None = None,
    strict: bool = False,
    keepdb: bool = False,
    interactive: bool = False,
    progress: ProgressCallback = ignore_progress,
    confirm: ConfirmCallback | None = None,
) -> RoundTripReport:
    """Round-trip the migrations of ``app_labels`` (all apps when empty) on a test database.

    With ``since``, only migrations whose files ``git diff REF...HEAD`` shows as added
    get a round trip; every other migration in the plan is applied once.
    """
    labels = list(dict.fromkeys(app_labels))
    on_disk = MigrationLoader(None, ignore_no_migrations=True)
    targets = [target for label in labels for target in planning.resolve_targets(on_disk, label)]
    chosen = _chosen(on_disk, labels, since)  # before creating anything: bad input exits early
    connection = connections[database]
    report = RoundTripReport(
        database=database, vendor=connection.vendor, strict=strict, since=since
    )
    with throwaway_database(
        connection, keepdb=keepdb, interactive=interactive, confirm=confirm, progress=progress
    ) as test_name:
        report.test_database = test_name
        identity = database_identity(connection)
        # migrator's executor, as safemigrate runs migrations; it also records an unapplied
        # migration inside the migration's transaction (one commit fewer per round trip).
        executor = RecordingExecutor(connection, record_hashes=False)
        planning.check_history(executor.loader)
        plan = executor.migration_plan(targets or executor.loader.graph.leaf_nodes())
        tested = {m for m, _ in plan if (m.app_label, m.name) in chosen}
        report.planned_round_trips = len(tested)
        report.planned_applied_once = len(plan) - len(tested)
        progress(
            ProgressEvent(
                "roundtrip_plan",
                message=f"Round trips of {len(tested)} migration(s); "
                f"{len(plan) - len(tested)} other(s) to apply once.",
            )
        )
        try:
            walk(executor, plan, tested, report, progress=progress)
        except DatabaseError:
            _still_there(connection, identity, test_name)
            raise
        _still_there(connection, identity, test_name)
        _report_model_changes(report, executor.loader, labels)
    return report


def _report_model_changes(report: RoundTripReport, loader: MigrationLoader, labels: list[str]):
    """``makemigrations --check``'s findings: the project's, and installed packages' apart
    (a warning unless THIRD_PARTY_STRICT, as verifymigrations' W002)."""
    in_package = packages.third_party_apps(loader)
    strict = get_settings().third_party_strict
    for change in model_changes(labels):
        app_label = change.partition(":")[0]
        if in_package.get(app_label) and not strict:
            report.package_model_changes.append(change)
        else:
            report.model_changes.append(change)


def _chosen(loader: MigrationLoader, labels: list[str], since: str | None) -> set[MigrationKey]:
    """The migrations to round-trip: those of ``labels`` (all when empty) that REF added."""
    chosen = {key: m for key, m in loader.graph.nodes.items() if not labels or key[0] in labels}
    if since is None:
        return set(chosen)
    files = {key: integrity.migration_file(m) for key, m in chosen.items()}
    added = added_files(since, [path for path in files.values() if path is not None])
    return {key for key, path in files.items() if path is not None and path.resolve() in added}


def walk(
    executor: MigrationExecutor,
    plan: MigrationPlan,
    tested: set[Migration],
    report: RoundTripReport,
    *,
    progress: ProgressCallback = ignore_progress,
) -> None:
    """Apply ``plan`` one migration at a time, round-tripping those in ``tested``.

    The project state is carried from step to step (cloned once per round trip) and
    snapshots reuse unchanged tables, so each step costs about what applying costs.
    After a failure the walk goes on with every migration that the database, as the
    failure left it, still allows; the others are reported as not reached, with why.
    """
    connection = executor.connection
    executor.recorder.ensure_schema()
    state = executor._create_project_state(with_applied_migrations=True)
    emit_pre_migrate_signal(0, False, connection.alias, apps=state.apps, plan=plan)
    snapshot, fresh = None, False  # fresh: the snapshot shows the schema as it is now
    blocked: dict[MigrationKey, str] = {}  # migration -> why it cannot be reached
    for migration, _ in plan:
        label, key = migration_label(migration), (migration.app_label, migration.name)
        if key in blocked:
            report.not_reached.append(NotReached(label, blocked[key], migration in tested))
            continue
        before = snapshot if fresh else None
        if migration not in tested:
            progress(ProgressEvent("base_apply", migration=label))
            try:
                state = executor.apply_migration(state, migration)
            except MIGRATION_CODE_ERRORS as exc:  # any error of a user's migration
                result = MigrationResult(
                    label, FAILED, error=_error(exc), phase="apply", round_trip=False
                )
                report.results.append(result)
                state = _go_on_after_failure(executor, migration, result, plan, blocked, before)
            else:
                report.base.append(label)
            fresh = False
            continue
        progress(ProgressEvent("roundtrip_start", migration=label))
        started = time.monotonic()
        if before is None:
            before = take_snapshot(connection, *([snapshot] if snapshot else []))
        result, new_state, after = _round_trip(executor, migration, state, before)
        if new_state is None:  # a phase failed
            state = _go_on_after_failure(executor, migration, result, plan, blocked, before, after)
            snapshot, fresh = before, False
        else:
            state, snapshot, fresh = new_state, after, True
        result.duration = time.monotonic() - started
        report.results.append(result)
        progress(
            ProgressEvent(
                "roundtrip_done",
                migration=label,
                duration=result.duration,
                message=result.status,
                data=result.as_dict(),
            )
        )


def _round_trip(
    executor: MigrationExecutor,
    migration: Migration,
    state: ProjectState,
    before: SchemaSnapshot,
) -> tuple[MigrationResult, ProjectState | None, SchemaSnapshot | None]:
    """Apply, unapply, re-apply one migration; return its result, state and snapshot.

    The state is None when a phase failed (``result.phase``); the snapshot is then the
    one taken after the first apply, if it got that far.
    """
    connection = executor.connection
    label = migration_label(migration)
    state_before = state.clone()
    try:
        state = executor.apply_migration(state, migration)
    except MIGRATION_CODE_ERRORS as exc:
        return MigrationResult(label, FAILED, error=_error(exc), phase="apply"), None, None
    after = take_snapshot(connection, before)
    irreversible = [_describe(op) for op in migration.operations if not planning.reversible(op)]
    if irreversible:
        result = MigrationResult(label, IRREVERSIBLE, irreversible_operations=irreversible)
        return result, state, after
    result = MigrationResult(label, OK)
    # A state carried from an AlterField is "delayed": only the altered model and its
    # relations were rendered again, and other models keep keys to their old classes.
    # Django's backward path renders each state whole; reverse code that queries them
    # needs one set too (schema operations and no-op reverses do not: rendering costs).
    if any(_reverse_code(operation) for operation in migration.operations):
        state_before.clear_delayed_apps_cache()
    try:
        executor.unapply_migration(state_before, migration)
    except MIGRATION_CODE_ERRORS as exc:
        result.status, result.error, result.phase = FAILED, _error(exc), "unapply"
        return result, None, after
    result.differences = compare_snapshots(before, take_snapshot(connection, before, after))
    try:
        state = executor.apply_migration(state_before, migration)
    except MIGRATION_CODE_ERRORS as exc:
        # After a reverse that left the schema different, the re-apply failing is a
        # consequence: the finding is the reverse (exit 2), the error says how it showed.
        result.status = DIFFERENCES if result.differences else FAILED
        result.error, result.phase = _error(exc), "reapply"
        return result, None, after
    again = take_snapshot(connection, after, before)
    result.differences += compare_snapshots(
        after, again, now="after re-applying", then="after the first apply"
    )
    if result.differences:
        result.status = DIFFERENCES
    return result, state, again


def _reverse_code(operation: Any) -> bool:
    """Whether undoing ``operation`` runs Python code (RunPython, RunPythonInBatches)."""
    if isinstance(operation, SeparateDatabaseAndState):
        return any(_reverse_code(inner) for inner in operation.database_operations)
    reverse = getattr(operation, "reverse_code", None) or getattr(
        operation, "reverse_function", None
    )
    return reverse is not None and reverse is not RunPython.noop


def _go_on_after_failure(
    executor: MigrationExecutor,
    migration: Migration,
    result: MigrationResult,
    plan: MigrationPlan,
    blocked: dict[MigrationKey, str],
    before: SchemaSnapshot | None,
    after: SchemaSnapshot | None = None,
) -> ProjectState:
    """Find where a failure left the database, block what it cannot reach, return the state.

    As its first apply left it (a failed reverse or re-apply rolled back, or a re-apply
    that failed on what the reverse left behind): the migration is recorded as applied
    and the walk goes on. As before it (an atomic migration rolled back): only the
    migrations that depend on it are blocked. Anything else blocks every later migration.
    """
    connection, label = executor.connection, migration_label(migration)
    key = (migration.app_label, migration.name)
    applied = key in executor.recorder.applied_migrations()
    now = take_snapshot(connection, *(s for s in (before, after) if s)) if before else None
    if result.phase != "apply" and after is not None and not compare_snapshots(after, now):
        if not applied:
            executor.apply_migration(ProjectState(), migration, fake=True)
            result.note = (
                "The schema is as its first apply left it: recorded as applied, "
                "and the walk went on from there."
            )
    elif not applied and (
        not compare_snapshots(before, now)
        if now is not None
        else migration.atomic and connection.features.can_rollback_ddl
    ):
        reason = f"depends on {label}, which is not applied after its failure"
        for descendant in executor.loader.graph.backwards_plan(key):
            blocked.setdefault(descendant, reason)
    else:
        reason = (
            f"{label} failed while {_PHASES[result.phase]} and left the database neither as "
            "before nor as after it; no later result could be trusted"
        )
        for later, _ in plan:
            blocked.setdefault((later.app_label, later.name), reason)
    return _recorded_state(executor)


_PHASES = {"apply": "applying", "unapply": "unapplying", "reapply": "re-applying"}


def _recorded_state(executor: MigrationExecutor) -> ProjectState:
    """The project state of the migrations that the test database records as applied.

    A squash is recorded under the names it replaces (its own name only once ``migrate``
    ends): it counts as applied when they all are, as ``MigrationLoader`` counts it.
    """
    loader = executor.loader
    applied = executor.recorder.applied_migrations()
    for key, squash in loader.replacements.items():
        if compat.all_replaced_applied(loader, key, applied):
            applied[key] = squash
    loader.applied_migrations = applied
    return executor._create_project_state(with_applied_migrations=True)


def _error(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines())  # PostgreSQL's DETAIL: too
    return f"{type(exc).__name__}: {text}".strip()


def _describe(operation: Any) -> str:
    try:
        return operation.describe()
    except Exception:  # noqa: BLE001  (a third-party operation's describe() may be broken)
        return type(operation).__name__


# ---------------------------------------------------------------------------
# Models without migrations, and migrations a git range added


def model_changes(app_labels: Iterable[str] = ()) -> list[str]:
    """What ``makemigrations --check`` would write, one line per operation."""
    labels = set(app_labels)
    loader = MigrationLoader(None, ignore_no_migrations=True)
    autodetector = MigrationAutodetector(
        loader.project_state(),
        ProjectState.from_apps(global_apps),
        NonInteractiveMigrationQuestioner(
            specified_apps=labels, dry_run=True, verbosity=0, log=_discard
        ),
    )
    changes = autodetector.changes(
        graph=loader.graph, trim_to_apps=labels or None, convert_apps=labels or None
    )
    return [
        f"{app_label}: {_describe(operation)}"
        for app_label, migrations in sorted(changes.items())
        for migration in migrations
        for operation in migration.operations
    ]


def _discard(message: str) -> None:
    """The questioner's log: nothing a non-interactive check needs to say."""


def added_files(since: str, paths: Iterable[Path]) -> set[Path]:
    """Those of ``paths``' repositories' files that ``git diff REF...HEAD`` shows as added.

    Three dots: what HEAD added since it forked from REF, as a pull request's diff.
    Renames count as additions (``--no-renames``); uncommitted files do not count.
    """
    if since.startswith("-"):
        raise InvalidRequest(f"{since!r} is not a git revision.")
    paths = list(paths)
    if not paths:
        return set()
    tops = {_git(path.parent, "rev-parse", "--show-toplevel", check=False) for path in paths}
    tops.discard("")
    if not tops:
        raise InvalidRequest("--since needs the migrations to be in a git repository.")
    added: set[Path] = set()
    for top in sorted(tops):
        try:
            listed = _git(
                Path(top),
                "diff", "-z", "--name-only", "--no-renames", "--diff-filter=A", f"{since}...HEAD",
                "--",
            )  # fmt: skip
        except InvalidRequest as exc:  # almost always a revision this clone lacks
            raise InvalidRequest(
                f"--since {since!r}: {exc}; give a branch, tag or commit that this clone has "
                "(a shallow CI clone may need 'git fetch' first)."
            ) from None
        added.update(Path(top, name).resolve() for name in listed.split("\0") if name)
    return added


def _git(directory: Path, *args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise InvalidRequest("--since needs git, which is not installed.") from None
    if done.returncode != 0:
        if not check:
            return ""
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise InvalidRequest(f"git {args[0]} in {str(directory)!r}: {reason}")
    return done.stdout.rstrip("\n") if args[0] == "rev-parse" else done.stdout
