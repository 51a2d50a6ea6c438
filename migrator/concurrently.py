"""PostgreSQL statements that work under a weak lock for a long time, and their leftovers.

``CREATE INDEX CONCURRENTLY`` and ``VALIDATE CONSTRAINT`` scan a whole table while the
application keeps writing (SHARE UPDATE EXCLUSIVE): they may legitimately outlast any
``statement_timeout``. A concurrent build that fails or is killed half-way leaves an
INVALID index behind, which ``IF NOT EXISTS`` would then take for a finished one: it is
dropped before the build starts again.
"""

import re
from typing import Final

from django.db.backends.base.base import BaseDatabaseWrapper

_CONCURRENT_BUILD: Final = re.compile(
    r"""\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|REINDEX\s+\w+)\s+CONCURRENTLY\s+
        (?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[\w.$]+)""",
    re.IGNORECASE | re.VERBOSE,
)
_CONCURRENT_DROP: Final = re.compile(
    r"""\s*DROP\s+INDEX\s+CONCURRENTLY\s+(?:IF\s+EXISTS\s+)?("(?:[^"]|"")+"|[\w.$]+)""",
    re.IGNORECASE,
)
_VALIDATE: Final = re.compile(r"\s*ALTER\s+TABLE\s.*\sVALIDATE\s+CONSTRAINT\s", re.I | re.S)


def build_index_name(sql: object) -> str | None:
    """The index a ``CREATE [UNIQUE] INDEX CONCURRENTLY`` (or REINDEX) statement builds."""
    return _index_name(_CONCURRENT_BUILD, sql)


def drop_index_name(sql: object) -> str | None:
    """The index a ``DROP INDEX CONCURRENTLY`` statement drops.

    Such a drop marks the index INVALID and commits before it waits for the table's
    users: stopped there (by ``lock_timeout``), it leaves the index INVALID.
    """
    return _index_name(_CONCURRENT_DROP, sql)


def _index_name(pattern: re.Pattern[str], sql: object) -> str | None:
    match = pattern.match(sql) if isinstance(sql, str) else None
    if match is None:
        return None
    name = match.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def is_long_under_weak_lock(sql: object) -> bool:
    """Whether a statement scans a table without blocking its writers (no statement_timeout)."""
    return isinstance(sql, str) and (
        build_index_name(sql) is not None or _VALIDATE.match(sql) is not None
    )


def drop_invalid_index(connection: BaseDatabaseWrapper, name: str) -> bool:
    """Drop the INVALID leftover of an interrupted concurrent build of ``name``, if any.

    Outside a transaction (``DROP INDEX CONCURRENTLY`` does not block the table's users).
    Returns whether there was one.
    """
    if not is_invalid_index(connection, name):
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {connection.ops.quote_name(name)}")
    return True


def is_invalid_index(connection: BaseDatabaseWrapper, name: str) -> bool:
    """Whether the index ``name`` exists and is INVALID (no query uses it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid) AND NOT i.indisvalid",
            [name],
        )
        return cursor.fetchone() is not None
