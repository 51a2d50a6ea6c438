"""Helpers for driving migrator the way users do: call_command, and real child processes."""

import copy
import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from tests.pg import pgserver_bin_dir

ROOT = Path(__file__).resolve().parent.parent


class TTYInput(StringIO):
    """Typed answers for a prompt, on what looks like a terminal."""

    def isatty(self) -> bool:
        return True


def run_command(name: str, *args: str, **options: object) -> tuple[str, str, int]:
    """Run a management command; return (stdout, stderr, exit code) as a shell would see."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err, **options)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + f"{exc}\n", exc.returncode
    return out.getvalue(), err.getvalue(), 0


def child_env(alias: str, **extra: str | None) -> dict[str, str]:
    """Environment for a child ``django-admin`` aimed at the database under test as 'default'.

    ``extra`` values of None remove a variable.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MIGRATOR_TEST_TARGET": f"{alias}:{connections[alias].settings_dict['NAME']}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.update({name: value for name, value in extra.items() if value is not None})
    for name in [name for name, value in extra.items() if value is None]:
        env.pop(name, None)
    return env


def django_admin(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]


def run_child(
    alias: str, *args: str, timeout: float = 300, prefix: Sequence[str] = (), **env: str | None
):
    """Run a management command in a child process against the database under test.

    ``prefix``: a command that runs the child (``setpriv ...`` to change its uid).
    """
    return subprocess.run(
        [*prefix, *django_admin(*args)],
        env=child_env(alias, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_child_peak_rss(
    alias: str, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess, int]:
    """``run_child``, plus the child's own peak RSS in KiB.

    Measured by ``tests.peak_rss``, a small process that forks the command and reads its
    ``os.wait4`` rusage: ``RUSAGE_CHILDREN`` would report the largest child the test process
    ever reaped, and even ``os.wait4`` on a child of the test process counts the test
    process's own memory (see ``tests/peak_rss.py``).
    """
    done = run_child(alias, *args, prefix=[sys.executable, "-m", "tests.peak_rss"], **env)
    *lines, last = done.stderr.splitlines(keepends=True)
    done.stderr = "".join(lines)
    return done, int(last.removeprefix("peak_rss_kb="))


def start_child(alias: str, *args: str, **env: str) -> subprocess.Popen:
    """Start a management command whose stdin the test controls (for PAUSE_AT steps)."""
    return subprocess.Popen(
        django_admin(*args),
        env=child_env(alias, **env),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(
    child: subprocess.Popen, expected: str, timeout: float = 300, *, starting: bool = False
) -> None:
    """Read the child's stdout until a line ends with ``expected`` (progress shares lines),
    or, ``starting``, begins with it.

    A child that never prints it is killed after ``timeout`` seconds, so that a test waiting
    for a pause that never comes fails instead of hanging the suite.
    """
    watchdog = threading.Timer(timeout, child.kill)
    watchdog.start()
    try:
        for line in child.stdout:
            text = line.strip()
            if text.startswith(expected) if starting else text.endswith(expected):
                return
    finally:
        watchdog.cancel()
    raise AssertionError(
        f"child ended (or was killed after {timeout:g} s) before printing {expected!r}: "
        f"{child.stderr.read()}"
    )


def killed_when_paused(child: subprocess.Popen) -> None:
    """kill -9 a child (``start_child``) once it says PAUSED, its streams closed after."""
    try:
        wait_for_line(child, "PAUSED")
        child.kill()
        child.wait(timeout=60)
    finally:
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()


def execute(alias: str, sql: str, params: list | None = None) -> list[tuple]:
    """Run SQL on Django's connection of ``alias``; its rows, if it returns any."""
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def raw_connection(alias: str, **params: object):
    """A DB-API connection of the alias's own driver (psycopg2 or psycopg 3), outside Django.

    Not in autocommit: like psql in a transaction, what it locks stays locked until it ends.
    """
    connection = connections[alias]
    return connection.get_new_connection({**connection.get_connection_params(), **params})


def table_columns(alias: str, table: str) -> list[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, table)]


def own_migrations() -> int:
    """How many migrations migrator ships for its own tables (a run applies them first)."""
    return len(own_migration_labels())


def own_migration_labels() -> list[str]:
    """migrator's own migrations in the order a run on a new database applies them, first."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    return [f"{app}.{name}" for app, name in graph.forwards_plan(*graph.leaf_nodes("migrator"))]


def applied(alias: str, app_label: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT name FROM django_migrations WHERE app = %s ORDER BY id", [app_label])
        return [row[0] for row in cursor.fetchall()]


def sweep_before_locking(monkeypatch, locking: Callable[[Path], bool], sweep: Callable[[], object]):
    """Run ``sweep`` once, just before the first blocking lock of a file ``locking`` picks.

    That is the instant another process's sweep of leftovers can find a new file not yet
    locked: a race made to happen every time, in this process. Returns the list of the
    files it ran before (one at most).
    """
    flock = fcntl.flock
    swept: list[Path] = []

    def flock_after_a_sweep(descriptor, operation):
        number = descriptor if isinstance(descriptor, int) else descriptor.fileno()
        path = Path(os.readlink(f"/proc/self/fd/{number}"))
        if operation == fcntl.LOCK_EX and not swept and locking(path):
            swept.append(path)
            sweep()
        return flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweep)
    return swept


PAUSING_TOOL = """#!/bin/sh
if [ "$1" = "--version" ]; then exec {real}/{name} --version; fi
echo PAUSED > {fifo}
exec sleep 600
"""


def bin_with(tmp_path: Path, tool: str, script: str, **fields: object) -> Path:
    """A PG_BIN_DIR, ``tmp_path/bin``, whose ``tool`` is the shell ``script`` (formatted with
    ``real``, the real tools' directory, and ``fields``) and the other tools the real ones."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        if name != tool:
            (bin_dir / name).symlink_to(Path(pgserver_bin_dir(), name))
    (bin_dir / tool).write_text(script.format(real=pgserver_bin_dir(), **fields))
    (bin_dir / tool).chmod(0o700)
    return bin_dir


def fifos(directory: Path, *names: str) -> list[Path]:
    """New FIFOs in ``directory``, one per name."""
    for name in names:
        os.mkfifo(directory / name)
    return [directory / name for name in names]


def pausing_bin(tmp_path: Path, tool: str = "pg_restore") -> Path:
    """PG_BIN_DIR whose ``tool`` writes PAUSED to the FIFO ``tmp_path/paused`` and stops."""
    [fifo] = fifos(tmp_path, "paused")
    return bin_with(tmp_path, tool, PAUSING_TOOL, fifo=fifo, name=tool)


def start_paused_in_pg_restore(
    alias: str,
    backup_dir: Path,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tool: str = "pg_restore",
    **popen: object,
) -> subprocess.Popen:
    """A child command whose pg_restore (or ``tool``: ``pausing_bin``) has started and
    stopped.

    ``env``: more of the child's environment; ``popen``: more of ``subprocess.Popen``'s
    arguments (its output streams)."""
    child = subprocess.Popen(
        django_admin(*args),
        env=child_env(
            alias,
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
            MIGRATOR_TEST_PG_BIN_DIR=str(pausing_bin(tmp_path, tool)),
            **(env or {}),
        ),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        **popen,
    )
    assert (tmp_path / "paused").read_text() == "PAUSED\n"
    return child


@contextmanager
def repointed(alias: str, **changes: object) -> Iterator[None]:
    """The connection ``alias`` with these settings meanwhile, closed before and after."""
    connection = connections[alias]
    connection.close()
    saved = copy.deepcopy(connection.settings_dict)
    connection.settings_dict.update(changes)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
