"""How many rows a table holds, read without scanning a big one.

Shared by the risk analysis (how bad a lock or a lost column is) and the batched data
migrations of ``migrator.operations`` (the total a progress bar counts towards).
"""

from dataclasses import dataclass
from typing import Final

from django.db import OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import timeouts

EXACT_COUNT_LIMIT: Final = 10_000  # tables up to this many rows are counted exactly


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


def table_rows(
    connection: BaseDatabaseWrapper, table: str, *, limit: int = EXACT_COUNT_LIMIT
) -> RowCount:
    """The rows of ``table``, reading at most ``limit + 1`` of them, and none of a big one.

    PostgreSQL: a table whose estimate (``pg_class.reltuples``, or the live rows counted
    since if more) is above ``limit`` gets it without being read; a smaller one is counted
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
    """The larger of the planner's estimate and the live rows the statistics counted.

    ``reltuples`` is as old as the table's last ANALYZE or VACUUM, so a table grown since
    would be undersized; ``n_live_tup`` follows every committed write (within a second or
    so) but starts again from zero after a statistics reset. Neither takes a lock:
    ``pg_relation_size`` would, and wait behind a running migration's ACCESS EXCLUSIVE.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, pg_stat_get_live_tuples(c.oid) FROM pg_class c "
            "WHERE c.oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    if row is None:
        return _MISSING
    analysed, live = int(row[0]), row[1]
    if analysed < 0 and not live:  # never vacuumed nor analysed, and no write counted
        return None
    return max(analysed, live)


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
