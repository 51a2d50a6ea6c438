"""PostgreSQL per-migration timeouts, and who is in the way when a migration times out.

An ``ALTER TABLE`` waiting for a lock queues every later query on that table behind it;
``lock_timeout`` bounds that wait, so that a migration blocked by a long transaction gives
up quickly instead of taking the site down. The timeouts are set with ``SET LOCAL``
(``set_config(..., true)``) inside each atomic migration's own transaction: they vanish
with it, and never touch the run lock's connection or waiting for the run lock.
Non-atomic migrations (``CREATE INDEX CONCURRENTLY``) get them for the session while they
run, and the session's own values back afterwards; there each statement commits on its
own, so a statement stopped by ``lock_timeout`` had no effect and is retried alone.
Statements that scan under a weak lock (``migrator.concurrently``) are exempt from
``statement_timeout``.
"""

import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import truncate_name
from django.db.migrations import Migration, operations
from django.db.migrations.operations.models import ModelOperation
from django.db.migrations.state import ProjectState

from migrator import sessions
from migrator.conf import get_settings

LOCK_NOT_AVAILABLE: Final = "55P03"  # SQLSTATE of "canceling statement due to lock timeout"
LONGEST_BACKOFF: Final = 30.0
CLIENT_CHECK_INTERVAL: Final = "1000"  # ms: how soon a killed run's server process stops
CONNECT_TIMEOUT: Final = "10"  # s: PGCONNECT_TIMEOUT of a command where none is set
# What a tool's script runs first, as ``watch_client`` does: a server process whose client
# died (a killed restore's psql) would otherwise go on to the end of what it was doing (a
# lock wait, an index build, a VACUUM), holding what it has locked. Where the server
# cannot look (before 14, or its platform), the setting is refused, and left alone.
WATCH_CLIENT_SCRIPT: Final = f"""
DO $migrator$
BEGIN
  PERFORM pg_catalog.set_config('client_connection_check_interval', '{CLIENT_CHECK_INTERVAL}',
    false);
EXCEPTION WHEN undefined_object OR invalid_parameter_value THEN NULL;
END
$migrator$;
"""


def applies(connection: BaseDatabaseWrapper, migration: Migration) -> bool:
    """Whether this migration runs under migrator's timeouts (atomic, on PostgreSQL)."""
    return connection.vendor == "postgresql" and bool(migration.atomic)


def set_local_timeouts(connection: BaseDatabaseWrapper) -> None:
    """``SET LOCAL lock_timeout`` and ``statement_timeout``, for the open transaction only."""
    _set(connection, _configured(), local=True)


def set_session_timeouts(connection: BaseDatabaseWrapper) -> None:
    """``lock_timeout`` and ``statement_timeout`` for the session (a non-atomic migration)."""
    _set(connection, _configured(), local=False)


@contextmanager
def session_timeouts(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """The configured timeouts for the session meanwhile, its own values back afterwards."""
    saved = _current(connection, TIMEOUTS)
    set_session_timeouts(connection)
    try:
        yield
    finally:
        if connection.connection is not None and not connection.needs_rollback:
            _set(connection, saved, local=False)


@contextmanager
def statement_timeout_lifted(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """No ``statement_timeout`` for one statement (a concurrent build), then as it was."""
    local = connection.in_atomic_block
    saved = _current(connection, ["statement_timeout"])
    _set(connection, {"statement_timeout": "0"}, local=local)
    try:
        yield
    finally:
        if connection.connection is not None and not (local and connection.needs_rollback):
            _set(connection, saved, local=local)


TIMEOUTS: Final = ["lock_timeout", "statement_timeout"]


def _configured() -> dict[str, str]:
    settings = get_settings()
    seconds = {
        "lock_timeout": settings.pg_lock_timeout,
        "statement_timeout": settings.pg_statement_timeout,
    }
    return {
        name: f"{round(value * 1000)}ms" for name, value in seconds.items() if value is not None
    }


def configured_lock_timeout() -> str | None:
    """``PG_LOCK_TIMEOUT`` as PostgreSQL takes it (``'5000ms'``); None where none is set."""
    return _configured().get("lock_timeout")


def backup_lock_wait() -> float | None:
    """Seconds a backup waits for a table's lock: ``PG_LOCK_TIMEOUT`` for each of the
    1 + ``LOCK_RETRIES`` attempts a migration would make, in one wait (``pg_dump`` cannot
    retry a lock, and a backup's ACCESS SHARE queues no reader behind it); None where no
    ``PG_LOCK_TIMEOUT`` is set (no bound, as for migrations)."""
    settings = get_settings()
    if settings.pg_lock_timeout is None:
        return None
    return settings.pg_lock_timeout * (settings.lock_retries + 1)


def backup_lock_timeout() -> str:
    """``backup_lock_wait`` as ``lock_timeout`` takes it: ``'0'`` (no bound) where no
    ``PG_LOCK_TIMEOUT`` is set, whatever the database or role sets."""
    seconds = backup_lock_wait()
    return "0" if seconds is None else f"{round(seconds * 1000)}ms"


def _current(connection: BaseDatabaseWrapper, names: list[str]) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names)
        return dict(zip(names, cursor.fetchone(), strict=True))


def _set(connection: BaseDatabaseWrapper, values: dict[str, str], *, local: bool) -> None:
    with connection.cursor() as cursor:
        for name, value in values.items():
            cursor.execute("SELECT set_config(%s, %s, %s)", [name, value, local])


def watch_client(connection: BaseDatabaseWrapper) -> None:
    """PostgreSQL 14+: the session checks every second that this process still lives.

    A server process notices that its client died only when it next talks to it: one
    running a killed run's migration would go on to the end of it (an index build, a
    backfill, a lock wait) before rolling back, holding its locks meanwhile. Left as it is
    where the server's platform cannot check (it refuses the setting).
    """
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return
    with (
        suppress(DatabaseError),
        transaction.atomic(using=connection.alias),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT set_config('client_connection_check_interval', %s, false)",
            [CLIENT_CHECK_INTERVAL],
        )


@contextmanager
def bounded_connects() -> Iterator[None]:
    """Meanwhile, a PostgreSQL server waits ``CONNECT_TIMEOUT`` s for an answer at most.

    libpq waits without end by default, so a server that accepts and never answers (hung,
    overloaded, a port forwarded to nothing) held a deploy silently. ``PGCONNECT_TIMEOUT``
    bounds every libpq connection of the process that sets no ``connect_timeout`` of its
    own (``OPTIONS``), the tools' too (psycopg 3 reads it as well); one the environment
    already has is kept. The environment is as it was afterwards.
    """
    if "PGCONNECT_TIMEOUT" in os.environ:
        yield
        return
    os.environ["PGCONNECT_TIMEOUT"] = CONNECT_TIMEOUT
    try:
        yield
    finally:
        os.environ.pop("PGCONNECT_TIMEOUT", None)


def unanswered(connection: BaseDatabaseWrapper, reason: str) -> str:
    """`` (no answer within N s...)`` where a connection failed on its connect timeout."""
    if "timeout expired" not in reason:
        return ""
    waited = (connection.settings_dict.get("OPTIONS") or {}).get("connect_timeout")
    if waited is None:
        waited = os.environ.get("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
    return f" (no answer within {waited} s; OPTIONS['connect_timeout'] sets how long to wait)"


class LocksNotGranted(Exception):
    """``retrying_locks`` gave up: after how many attempts, and who held the locks then."""

    def __init__(self, attempts: int, blockers: list["BlockingSession"]) -> None:
        super().__init__(attempts, blockers)
        self.attempts, self.blockers = attempts, blockers


def retrying_locks(
    connection: BaseDatabaseWrapper, tables: list[str], work: Callable[[], object]
) -> None:
    """``work()`` in a savepoint of the open transaction, its lock waits bounded as a
    migration's: ``PG_LOCK_TIMEOUT`` each, retried ``LOCK_RETRIES`` times with the back-off,
    each failed attempt's savepoint letting go of what it had locked. Then LocksNotGranted.
    PostgreSQL only; elsewhere, or with no ``PG_LOCK_TIMEOUT``, just ``work()``.
    """
    lock_timeout = configured_lock_timeout()
    if connection.vendor != "postgresql" or lock_timeout is None:
        work()
        return
    saved = _current(connection, ["lock_timeout"])
    bounded = {"lock_timeout": lock_timeout}
    retries = get_settings().lock_retries
    for attempt in itertools.count(1):
        try:
            with transaction.atomic(using=connection.alias):
                _set(connection, bounded, local=True)
                work()
                _set(connection, saved, local=True)
            return
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
        blockers = blocking_sessions(connection, tables, exclude_pid=backend_pid(connection))
        if attempt > retries:
            raise LocksNotGranted(attempt, blockers)
        time.sleep(backoff(attempt))


def describe_blockers(blockers: list["BlockingSession"]) -> str:
    """The sessions in the way, for a message; someone who let go before they were asked."""
    return "; ".join(b.describe() for b in blockers) or "a session that has since let go"


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether an error (or what caused it) is PostgreSQL's lock timeout (55P03)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "pgcode", None) or getattr(current, "sqlstate", None)
        if code == LOCK_NOT_AVAILABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from the lock timeout."""
    first = min(get_settings().pg_lock_timeout or 1.0, 1.0)
    return min(first * 2 ** (attempt - 1), LONGEST_BACKOFF)


@dataclass(frozen=True)
class BlockingSession:
    """A session that a migration waited for: holding a lock on ``table``, or (``table``
    None) a snapshot older than a concurrent index build, which waits for every such one."""

    pid: int
    application_name: str
    state: str
    query_start: datetime | None
    table: str | None
    transaction_start: datetime | None = None

    def describe(self) -> str:
        application = self.application_name or "no application_name"
        state = self.state or "state unknown"
        if self.table is None:
            return (
                f"pid {self.pid} ({application!r}, {state}, transaction started "
                f"{_moment(self.transaction_start)}) with a snapshot older than the index build"
            )
        return (
            f"pid {self.pid} ({application!r}, {state}, query started "
            f"{_moment(self.query_start)}) on {self.table}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "application_name": self.application_name,
            "state": self.state,
            "query_start": self.query_start.isoformat() if self.query_start else None,
            "table": self.table,
            "transaction_start": (
                self.transaction_start.isoformat() if self.transaction_start else None
            ),
        }


def _moment(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else "?"


def blocking_sessions(
    connection: BaseDatabaseWrapper,
    tables: list[str],
    *,
    exclude_pid: int | None,
    oids: list[int] | None = None,
) -> list[BlockingSession]:
    """Other sessions holding locks on ``tables`` (all user tables when none are known),
    or on the relations ``oids`` when given (exact whatever the names and schemas).

    Asked from a fresh connection right after the timeout: the migration's own transaction
    has been rolled back, so its ``pg_blocking_pids`` is gone, but the holders are still
    there (or have just let go, and then the retry goes through).
    """
    rows = _ask_another_session(
        connection,
        """
        SELECT DISTINCT a.pid, a.application_name, a.state, a.query_start, c.relname
        FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        JOIN pg_class c ON c.oid = l.relation
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE l.locktype = 'relation' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.pid <> pg_backend_pid() AND l.pid IS DISTINCT FROM %s
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND (cardinality(%s::text[]) = 0 OR c.relname = ANY(%s::text[]))
          AND (%s::oid[] IS NULL OR c.oid = ANY(%s::oid[]))
        ORDER BY a.pid, c.relname
        """,
        [exclude_pid, tables, tables, oids, oids],
    )
    return [
        BlockingSession(pid, app or "", state or "", start, table)
        for pid, app, state, start, table in rows
    ]


def older_snapshots(
    connection: BaseDatabaseWrapper, *, since: float, exclude_pid: int | None
) -> list[BlockingSession]:
    """Other sessions of this database holding a snapshot taken before ``since`` (a
    ``time.monotonic()`` reading): what ``CREATE INDEX CONCURRENTLY`` waits for before it
    ends, whatever tables they touched (a report in REPEATABLE READ, a ``pg_dump``)."""
    rows = _ask_another_session(
        connection,
        """
        SELECT pid, application_name, state, query_start, xact_start
        FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
          AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM %s
          AND backend_xmin IS NOT NULL
          AND xact_start < statement_timestamp() - make_interval(secs => %s)
        ORDER BY xact_start, pid
        """,
        [exclude_pid, time.monotonic() - since],
    )
    return [
        BlockingSession(pid, app or "", state or "", query_start, None, xact_start)
        for pid, app, state, query_start, xact_start in rows
    ]


def _ask_another_session(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    checker = sessions.own_session(connection)
    try:
        checker.ensure_connection()
        checker.set_autocommit(True)
        with checker.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        checker.close()


def backend_pid(connection: BaseDatabaseWrapper) -> int | None:
    """The server process of this connection, so that it is not listed as its own blocker."""
    if connection.connection is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def migration_tables(
    migration: Migration, state: ProjectState, connection: BaseDatabaseWrapper
) -> list[str]:
    """The tables a migration's operations name (and their foreign keys' targets)."""
    keys = set()
    for operation in migration.operations:
        for database_operation in _database_operations(operation):
            keys.update(_model_keys(database_operation, migration.app_label))
    names = set()
    for key in keys:
        model = state.models.get(key)
        if model is not None:
            names.add(
                model.options.get("db_table")
                or truncate_name(
                    f"{model.app_label}_{model.name_lower}", connection.ops.max_name_length()
                )
            )
    return sorted(names)


def _database_operations(operation: Any) -> list[Any]:
    if isinstance(operation, operations.SeparateDatabaseAndState):
        return [
            inner
            for outer in operation.database_operations
            for inner in _database_operations(outer)
        ]
    return [operation]


def _model_keys(operation: Any, app_label: str) -> set[tuple[str, str]]:
    if isinstance(operation, operations.RenameModel):
        names = [operation.old_name]
    elif isinstance(operation, ModelOperation):
        names = [operation.name]
    else:
        names = [getattr(operation, "model_name", None)]
    keys = {(app_label, name.lower()) for name in names if isinstance(name, str)}
    field = getattr(operation, "field", None)
    remote = getattr(getattr(field, "remote_field", None), "model", None)
    if isinstance(remote, str) and "." in remote:
        remote_app, remote_model = remote.lower().split(".", 1)
        keys.add((remote_app, remote_model))
    return keys


def unrendered_copy(state: ProjectState) -> ProjectState:
    """A copy of a state's models, cheap to take before each attempt (apps render lazily).

    ``Migration.apply`` mutates the state it is given, so a retry needs the state as it
    was; cloning the rendered apps for every migration would cost far more.
    """
    copy = ProjectState(
        models={key: model.clone() for key, model in state.models.items()},
        real_apps=state.real_apps,
    )
    copy.is_delayed = state.is_delayed
    return copy
