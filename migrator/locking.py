"""One run at a time per database.

PostgreSQL: a session-level advisory lock, taken with ``pg_try_advisory_lock`` on a
connection of its own in autocommit (a lock held inside a transaction, or a blocking
wait, deadlocks with ``CREATE INDEX CONCURRENTLY``), its holder visible in
``pg_stat_activity`` through ``application_name``. SQLite: an OS lock on a file beside
the database. Both vanish with the holder's process, so a kill -9 never leaves one behind.

A session lock needs a session of its own: behind PgBouncer in transaction (or statement)
pooling, the server session that took it goes back to the pool and serves other clients,
other runs included. A pooled connection is refused before anything is done; the way out
is ``MIGRATOR["DIRECT_DATABASES"]``, an alias that reaches PostgreSQL directly.
"""

import hashlib
import json
import os
import pwd
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from django.db import DatabaseError, Error
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import sessions
from migrator.conf import get_settings
from migrator.exceptions import (
    InvalidRequest,
    LockFileUnusable,
    LockNotAcquired,
    MigratorError,
    PooledConnection,
)

APPLICATION_PREFIX: Final = "migrator lock"
FIRST_POLL: Final = 0.05
LONGEST_POLL: Final = 1.0


@dataclass(frozen=True)
class LockHolder:
    """Who holds a database's migration lock, as far as the database or the lock file says."""

    host: str
    pid: int
    since: str
    user: str = ""

    def describe(self) -> str:
        who = f"{self.user}@{self.host}" if self.user else self.host
        return f"{who} pid {self.pid} since {self.since}"

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "pid": self.pid, "since": self.since, "user": self.user}


def os_user() -> str:
    """The real uid's passwd name, or ``uid N`` in a container whose uid has no entry.

    Not ``getpass.getuser()``: it believes ``$LOGNAME`` and ``$USER`` first, which a root
    shell left behind (``su`` without ``-``, an image's ``ENV USER=``) makes wrong.
    """
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def this_process() -> LockHolder:
    return LockHolder(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        user=os_user(),
    )


@contextmanager
def migration_lock(
    connection: BaseDatabaseWrapper,
    *,
    timeout: float,
    on_wait: Callable[[LockHolder | None], None] | None = None,
) -> Iterator[LockHolder]:
    """Hold the database's migration lock, waiting up to ``timeout`` seconds for it."""
    with _held(
        _lock_for(connection),
        timeout,
        on_wait,
        f"Database {connection.alias!r} is locked by another migrator run ({{who}}); gave up "
        f"after {timeout:g}s. Wait for it to finish, or raise --lock-timeout.",
    ) as me:
        yield me


@contextmanager
def throwaway_database_lock(
    connection: BaseDatabaseWrapper,
    test_name: str,
    *,
    timeout: float,
    on_wait: Callable[[LockHolder | None], None] | None = None,
) -> Iterator[LockHolder | None]:
    """Hold the lock of a throwaway test database name, so that runs sharing it take turns.

    PostgreSQL: an advisory lock taken in the server's maintenance database (the test
    database may not exist yet). SQLite: a lock file beside the test file; an in-memory
    test database belongs to its process, so there is nothing to share.
    """
    if connection.vendor == "sqlite" and connection.creation.is_in_memory_db(test_name):
        yield None
        return
    if connection.vendor == "postgresql":
        lock: _PostgresLock | _FileLock = _PostgresLock(
            connection, resource=f"test database {test_name}"
        )
    else:
        path = Path(f"{test_name}.migrator.lock")
        path.parent.mkdir(parents=True, exist_ok=True)  # where the test file will be
        lock = _FileLock(path)
    with _held(
        lock,
        timeout,
        on_wait,
        f"Test database {test_name!r} is in use by {{who}}; gave up after {timeout:g}s. "
        "Wait for it to finish, or set another DATABASES[...]['TEST']['NAME'].",
    ) as me:
        yield me


@contextmanager
def _held(
    lock: "_PostgresLock | _FileLock",
    timeout: float,
    on_wait: Callable[[LockHolder | None], None] | None,
    refusal: str,
) -> Iterator[LockHolder]:
    """Poll ``lock`` with backoff until it is ours or ``timeout`` passes (``refusal``)."""
    deadline = time.monotonic() + max(timeout, 0)
    poll = FIRST_POLL
    waiting_reported = False
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            holder = lock.holder()
            lock.close()
            who = holder.describe() if holder else "another process"
            raise LockNotAcquired(refusal.format(who=who))
        if not waiting_reported and on_wait is not None:
            on_wait(lock.holder())
            waiting_reported = True
        time.sleep(min(poll, max(deadline - time.monotonic(), 0)))
        poll = min(poll * 2, LONGEST_POLL)
    try:
        yield lock.me
    finally:
        lock.release()


def current_holder(connection: BaseDatabaseWrapper) -> LockHolder | None:
    """Who holds the migration lock of this database right now, if anyone; a SQLite lock
    file is only read (a database in a directory this user cannot write has none)."""
    lock = _lock_for(connection, reading=True)
    try:
        return lock.holder()
    finally:
        lock.close()


def end_own_lock_session(admin: BaseDatabaseWrapper, database_name: str) -> list[int]:
    """End this process's lock session in PostgreSQL database ``database_name`` (and so its
    lock), from ``admin``, a session elsewhere: a database is renamed only when no session
    is in it (a parallel restore's swap). Its ``release()`` then has nothing left to do.
    The pids signalled: their backends may take a moment to exit."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT pid, pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
            "WHERE datname = %s AND starts_with(application_name, %s)",
            [database_name, own_application_prefix()],
        )
        return [pid for pid, _ in cursor.fetchall()]


def own_application_prefix() -> str:
    """How this process's lock sessions begin their ``application_name``."""
    me = this_process()
    return f"{APPLICATION_PREFIX} {me.host} pid {me.pid} since "


def lock_key(database_name: str) -> int:
    """A stable signed 64-bit advisory lock key for a database name."""
    digest = hashlib.sha256(f"migrator:{database_name}".encode()).digest()
    return struct.unpack(">q", digest[:8])[0]


def require_own_session(connection: BaseDatabaseWrapper) -> None:
    """Refuse a PostgreSQL connection whose session is not its own (a pooler in between).

    When it connects, the driver is told the server process it talks to (libpq's
    BackendKeyData); a pooler such as PgBouncer answers with a key of its own, so that
    pid is not ``pg_backend_pid()``. An alias that ``DIRECT_DATABASES`` maps to itself
    is taken at its word (PgBouncer in session pooling keeps sessions whole).
    """
    if connection.vendor != "postgresql":
        return
    if get_settings().direct_databases.get(connection.alias) == connection.alias:
        return
    if pooled(connection):
        raise PooledConnection(
            f"Database {connection.alias!r} is reached through a connection pooler "
            "(PgBouncer?), where migrator's session lock and timeouts do not hold; set "
            f'MIGRATOR["DIRECT_DATABASES"] = {{{connection.alias!r}: "<an alias that connects '
            'to PostgreSQL directly>"}.'
        )


def require_same_database(asked: BaseDatabaseWrapper, direct: BaseDatabaseWrapper) -> None:
    """Refuse a ``DIRECT_DATABASES`` entry that reaches another database than its alias.

    Asked of the server through both (behind a pooler the names in the settings may
    differ): the database's name and oid, and when its server started. When the alias
    cannot be reached (its pooler is down) or the direct one cannot (the command says so
    next), there is nothing to compare.
    """
    if asked.vendor != "postgresql" or direct.vendor != "postgresql":
        return
    try:
        theirs, ours = _whereabouts(asked), _whereabouts(direct)
    except DatabaseError:
        return
    finally:
        asked.close()  # the command works through the direct one
    if theirs != ours:
        raise InvalidRequest(
            f"MIGRATOR['DIRECT_DATABASES'] sends {asked.alias!r} to {direct.alias!r}, which "
            f"reaches database {ours[0]!r}, not {theirs[0]!r} that {asked.alias!r} reaches "
            "(or another server's); make both reach the same database."
        )


def _whereabouts(connection: BaseDatabaseWrapper) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_database(), (SELECT oid FROM pg_database WHERE datname = "
            "current_database()), pg_postmaster_start_time()"
        )
        return tuple(cursor.fetchone())


def pooled(connection: BaseDatabaseWrapper) -> bool:
    """Whether a PostgreSQL connection goes through a pooler: the server process the driver
    was told of (libpq's BackendKeyData) is not the one serving it."""
    connection.ensure_connection()
    raw = connection.connection
    info = getattr(raw, "info", None)  # psycopg 3
    told = info.backend_pid if info is not None else raw.get_backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0] != told


class _PostgresLock:
    def __init__(self, connection: BaseDatabaseWrapper, *, resource: str | None = None) -> None:
        """The lock of ``connection``'s database, or of ``resource`` (in the server's
        maintenance database, as Django's ``_nodb_cursor``, for names of no database)."""
        self.key = lock_key(resource or connection.settings_dict["NAME"])
        self.me = this_process()
        self.connection = sessions.own_session(connection)
        if resource is not None:
            self.connection.settings_dict["NAME"] = None
        self.connection.ensure_connection()
        require_own_session(self.connection)
        self.connection.set_autocommit(True)
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('application_name', %s, false)",
                [own_application_prefix() + self.me.since],
            )

    def try_acquire(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
            return bool(cursor.fetchone()[0])

    def holder(self) -> LockHolder | None:
        high, low = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        with self.connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT a.application_name, a.pid, a.client_hostname, a.backend_start, a.usename
                FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                    SELECT oid FROM pg_database WHERE datname = current_database()
                ) AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
                AND l.objsubid = 1
                """,
                [high, low],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        application, backend_pid, client_host, backend_start, user = row
        parts = (application or "").split()
        if application.startswith(APPLICATION_PREFIX) and len(parts) == 7:
            return LockHolder(host=parts[2], pid=int(parts[4]), since=parts[6], user=user or "")
        return LockHolder(
            host=client_host or "local",
            pid=backend_pid,
            since=backend_start.isoformat(timespec="seconds"),
            user=user or "",
        )

    def release(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        except Error:  # its session is gone (see end_own_lock_session), and the lock with it
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.connection.close()


class _FileLock:
    """An ``fcntl`` lock on ``<database>.migrator.lock``; the kernel drops it with its holder.

    ``reading``: the file is opened read-only, not created; without one, or without the
    right to read it (another user's), no holder is known (the audit still lists the runs
    in progress).
    """

    def __init__(self, path: Path, *, reading: bool = False) -> None:
        import fcntl

        self._fcntl = fcntl
        self.path = path
        self.me = this_process()
        flags = os.O_RDONLY if reading else os.O_RDWR | os.O_CREAT
        self.handle = -1  # reading, without a lock file (or its read right): no holder known
        try:
            self.handle = os.open(path, flags, 0o600)
        except OSError as exc:
            if not (reading and isinstance(exc, FileNotFoundError | PermissionError)):
                raise LockFileUnusable(
                    f"Cannot open the lock file {str(path)!r} beside the database: "
                    f"{exc.strerror}. Let this user write to {str(path.parent)!r} (SQLite "
                    "writes its journal there too), and run the command again."
                ) from exc

    def try_acquire(self) -> bool:
        try:
            self._fcntl.flock(self.handle, self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.handle, 0)
        os.pwrite(self.handle, json.dumps(self.me.as_dict()).encode(), 0)
        return True

    def holder(self) -> LockHolder | None:
        if self.handle < 0:  # no lock file (nobody has ever held it), or not ours to read
            return None
        try:
            self._fcntl.flock(self.handle, self._fcntl.LOCK_SH | self._fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return LockHolder(**json.loads(self.path.read_text() or "{}"))
            except (ValueError, TypeError):
                return None
        self._fcntl.flock(self.handle, self._fcntl.LOCK_UN)
        return None

    def release(self) -> None:
        os.ftruncate(self.handle, 0)
        self.close()

    def close(self) -> None:
        if self.handle >= 0:
            os.close(self.handle)
            self.handle = -1


def _sqlite_lock_path(connection: BaseDatabaseWrapper) -> Path:
    name = str(connection.settings_dict["NAME"])
    if connection.is_in_memory_db():
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir(), f"migrator-{digest}.lock")
    if name.startswith("file:"):  # a URI name (Django opens SQLite with uri=True)
        name = unquote(urlsplit(name).path)
    return Path(f"{name}.migrator.lock")


def _lock_for(
    connection: BaseDatabaseWrapper, *, reading: bool = False
) -> "_PostgresLock | _FileLock":
    if connection.vendor == "postgresql":
        return _PostgresLock(connection)
    if connection.vendor == "sqlite":
        return _FileLock(_sqlite_lock_path(connection), reading=reading)
    raise MigratorError(
        f"No migration lock for {connection.vendor!r} databases; migrator supports "
        "PostgreSQL and SQLite."
    )
