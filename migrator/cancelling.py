"""Statements that Ctrl-C and SIGTERM cancel on the server at once, however long they wait.

psycopg2 waits for the server inside a C call, and Python runs a signal's handler only
once that call returns: a backup waiting for a table's lock (up to its lock_timeout, or
without end) heard an interrupt only then. Meanwhile, psycopg2 waits through a wait
callback in Python instead (its documented way to make Ctrl-C cancel a query), which
cancels the statement on an interrupt and raises it once the server has answered;
psycopg2 then closes that connection. psycopg 3 waits in Python and cancels on Ctrl-C
itself, but not on the exception a run's SIGTERM raises (``RunInterrupted``): that one
is cancelled here, and the connection closed.
"""

import select
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

from django.db.backends.base.base import BaseDatabaseWrapper

from migrator.exceptions import RunInterrupted

INTERRUPTS: Final = (KeyboardInterrupt, RunInterrupted)  # Ctrl-C, SIGTERM (in a run: the latter)


@contextmanager
def interruptible(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Meanwhile, Ctrl-C and SIGTERM cancel the statement that ``connection`` (PostgreSQL)
    waits for, and are raised once the server has answered.

    psycopg2's wait callback is process-wide (every psycopg2 connection waits through it
    meanwhile): set for the duration only, the previous one back afterwards.
    """
    if connection.vendor != "postgresql":
        yield
        return
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:
        try:
            yield
        except RunInterrupted:
            _cancel_psycopg3(connection)
            raise
        return
    from psycopg2 import extensions

    previous = extensions.get_wait_callback()
    extensions.set_wait_callback(_cancelling_wait)
    try:
        yield
    finally:
        extensions.set_wait_callback(previous)


def _cancelling_wait(conn: Any) -> None:
    """psycopg2's wait for the server, as ``psycopg2.extras.wait_select`` waits, but an
    interrupt is raised, not turned into the cancelled statement's error: once the server
    has answered the cancel (or at once, where the cancel cannot be sent)."""
    from psycopg2 import Error, extensions

    interrupted: BaseException | None = None
    state = None
    while state != extensions.POLL_OK:
        try:
            state = conn.poll()
            if state == extensions.POLL_READ:
                select.select([conn.fileno()], [], [])
            elif state == extensions.POLL_WRITE:
                select.select([], [conn.fileno()], [])
            elif state != extensions.POLL_OK:
                raise conn.OperationalError(f"bad state from poll: {state}")
        except INTERRUPTS as exc:
            interrupted = interrupted or exc
            try:
                conn.cancel()
            except Error:
                raise interrupted from None
        except Error:
            if interrupted is None:
                raise
            break  # the connection failed as it was cancelled
    if interrupted is not None:
        raise interrupted


def _cancel_psycopg3(connection: BaseDatabaseWrapper) -> None:
    """Cancel the statement still running on the server, and close the connection, which
    was left in the middle of it."""
    from psycopg import Error, pq

    raw = connection.connection
    if raw is None or raw.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    with suppress(Error):  # then closing it is all that is left
        raw.cancel()
    connection.close()
