"""New PostgreSQL databases on a connection's server, for a drill or a parallel restore.

Each is created empty from ``template0`` with the encoding and locale of the database it
stands in for. A scratch database left by a killed process is dropped by the next one of
its kind: one that no session is connected to (a live one always holds a session).
"""

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import sessions
from migrator.backup.base import first_line
from migrator.exceptions import BackupFailed

logger = logging.getLogger(__name__)

# The application_name of the sessions that fill a new database for a process that holds
# a session of its own in it too (a parallel restore's ``pg_restore --jobs``): never a
# sign of a live process. Those of a killed one go on to the end of their statement (an
# index build may take minutes: its workers outlive their leader), unless it is dropped.
TOOL_APPLICATION: Final = "migrator filling a new database"


def maintenance(connection: BaseDatabaseWrapper) -> BaseDatabaseWrapper:
    """A new connection to the server's maintenance database (as Django's ``_nodb_cursor``):
    one that is in neither the database it stands in for nor a scratch database."""
    admin = sessions.own_session(connection)
    admin.settings_dict["NAME"] = None
    return admin


def create(
    admin: BaseDatabaseWrapper, connection: BaseDatabaseWrapper, prefix: str, *, then: str
) -> str:
    """A new empty database ``prefix<random>`` like ``connection``'s, created after
    dropping the unused ones of that prefix; BackupFailed ending with ``then`` if it cannot."""
    name = f"{prefix}{secrets.token_hex(6)}"
    try:
        drop_unused(admin, prefix)
        create_like(admin, connection.settings_dict["NAME"], name)
    except DatabaseError as exc:
        raise BackupFailed(
            f"Cannot create a scratch database on the server of {connection.alias!r}: "
            f"{first_line(exc, connection)}. {then}"
        ) from exc
    return name


class Unreachable(BackupFailed):
    """A new database turned out to be out of the role's reach; nothing was changed.

    ``reason`` says why, for a restore that then takes the other route."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def connect(
    scratch: BaseDatabaseWrapper, connection: BaseDatabaseWrapper, *, failing: str, then: str
) -> None:
    """Connect to a new database before using it: a server may admit the role to the
    databases it knows and no other (``pg_hba.conf``), which only a connection tells.
    Unreachable, its message ``failing: <why>; nothing was changed. <then>``, if not."""
    try:
        scratch.ensure_connection()
    except DatabaseError as exc:
        reason = (
            f"the server does not let this role into a new database ({first_line(exc, connection)})"
        )
        raise Unreachable(reason, f"{failing}: {reason}; nothing was changed. {then}") from exc


def create_like(admin: BaseDatabaseWrapper, model: str, name: str) -> None:
    """CREATE DATABASE ``name``, empty, with the encoding and locale of database ``model``."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_catalog.pg_database WHERE datname = %s",
            [model],
        )
        encoding, collate, ctype = cursor.fetchone()
        cursor.execute(
            f"CREATE DATABASE {admin.ops.quote_name(name)} TEMPLATE template0 ENCODING %s "
            "LC_COLLATE %s LC_CTYPE %s",
            [encoding, collate, ctype],
        )


def drop_unused(
    admin: BaseDatabaseWrapper,
    prefix: str,
    *,
    described: str = "",
    why: str = "left by a process that was killed",
) -> None:
    """Drop the databases named ``prefix...`` (and commented ``described...``) that no
    session is connected to: by default those of killed processes (a live one always
    holds a session). An autovacuum worker in one (analysing what a restore loaded) is
    no session of anyone's, nor is a ``TOOL_APPLICATION`` session: the drop ends them."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT datname, EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
            "WHERE a.datid = d.oid AND a.application_name = %s) "
            "FROM pg_catalog.pg_database d WHERE starts_with(datname, %s) "
            "AND starts_with(coalesce(pg_catalog.shobj_description(d.oid, 'pg_database'), ''), "
            "%s) AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
            "WHERE a.datid = d.oid AND a.backend_type <> 'autovacuum worker' "
            "AND a.application_name <> %s)",
            [TOOL_APPLICATION, prefix, described, TOOL_APPLICATION],
        )
        for name, filled in cursor.fetchall():
            force = " WITH (FORCE)" if filled else ""  # its tools' sessions end with it
            try:
                cursor.execute(f"DROP DATABASE IF EXISTS {admin.ops.quote_name(name)}{force}")
                logger.info("Dropped %s, %s", name, why)
            except DatabaseError:  # someone connected meanwhile
                continue


def drop(admin: BaseDatabaseWrapper, name: str) -> None:
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {admin.ops.quote_name(name)} WITH (FORCE)")


@contextmanager
def registered(connection: BaseDatabaseWrapper, name: str) -> Iterator[BaseDatabaseWrapper]:
    """A connection to database ``name``, known to Django as alias ``name`` meanwhile.

    The engines address their database by alias (``transaction.atomic(using=...)``), as
    they do for ``restore``.
    """
    settings_dict = {**connection.settings_dict, "NAME": name}
    scratch = connection.__class__(settings_dict, alias=name)
    connections.settings[name] = settings_dict
    connections[name] = scratch
    try:
        yield scratch
    finally:
        scratch.close()
        del connections[name]
        connections.settings.pop(name, None)
