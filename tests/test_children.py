"""Child processes die with migrator, and what a kill leaves behind is swept.

Real children killed with SIGKILL at a moment the test observes (what the child's session
runs in pg_stat_activity, or its scratch files), sometimes after a set delay that places the
kill later in the same phase. The processes that must not survive are the killed command's
own descendants, collected by pid (with their start times) while it ran, never by name.
"""

import json
import os
import stat
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import pytest
from django.conf import settings
from django.db import connections

from migrator import scratch
from tests.utils import raw_connection, run_child, start_child, sweep_before_locking

PASSWORD = "pw-Never-Shown-42"  # noqa: S105  (trusted locally; only its file matters)
ROWS = 300_000
BIG_ROWS = 800_000
SETTLE = 15.0  # seconds the server may take to notice a dropped connection


class Stat(NamedTuple):
    state: str
    parent: int
    started: int  # clock ticks after boot: with the pid, names one process for good


def proc_stat(pid: int) -> Stat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return Stat(fields[0], int(fields[1]), int(fields[19]))


def descendants(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of every live process below ``root``."""
    below: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := proc_stat(int(entry.name))) and found.state != "Z":
            below.setdefault(found.parent, []).append((int(entry.name), found.started))
    result, todo = set(), [root]
    while todo:
        for process in below.get(todo.pop(), []):
            result.add(process)
            todo.append(process[0])
    return result


def alive(process: tuple[int, int]) -> bool:
    """The very process (not a later one given its pid) still runs; a zombie does not."""
    found = proc_stat(process[0])
    return found is not None and found.started == process[1] and found.state != "Z"


class Watched:
    """A child command, the processes it started (collected while it runs), and its kill."""

    def __init__(self, child) -> None:
        self.child, self.started, self.spawned = child, time.monotonic(), set()

    def look(self) -> None:
        self.spawned |= descendants(self.child.pid)

    def until(self, condition, *, what: str, timeout: float = 120.0) -> None:
        """Watch until ``condition()``; the child ending first is a failure."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.look()
            if self.child.poll() is not None:
                raise AssertionError(f"the child ended before {what}: {self.child.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(0.01)

    def kill_after(self, delay: float) -> float:
        """kill -9 ``delay`` seconds from now (placing the kill), watching meanwhile; returns
        the seconds since the child started."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            self.look()
            time.sleep(0.01)
        self.look()
        moment = time.monotonic() - self.started
        kill(self.child)
        return moment

    def survivors(self) -> list[tuple[int, int]]:
        return [process for process in self.spawned if alive(process)]


def wait_until(condition, *, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def kill(child) -> None:
    child.kill()
    child.wait(timeout=60)
    for stream in (child.stdin, child.stdout, child.stderr):
        stream.close()


@pytest.fixture
def env(tmp_path, db_alias):
    """Environment of the children: their own TMPDIR and backup directory."""
    (tmp_path / "tmp").mkdir()
    return {
        "TMPDIR": str(tmp_path / "tmp"),
        "MIGRATOR_TEST_BACKUP_DIR": str(tmp_path / "backups"),
        "MIGRATOR_TEST_PASSWORD": PASSWORD,
    }


def scratch_dirs(env) -> list[Path]:
    return sorted(Path(env["TMPDIR"]).glob("migrator-scratch-*"))


def bulk_rows(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bulk")
        return cursor.fetchone()[0]


def backed_up(alias: str, env, *, rows: int = ROWS, large_objects: int = 0) -> str:
    """The demo migrated, a big indexed table, ``large_objects`` of 512 KB referenced by a
    table (PostgreSQL), and a backup of it; then a row more."""
    assert run_child(alias, "safemigrate", "--noinput", **env).returncode == 0
    with connections[alias].cursor() as cursor:
        if large_objects:
            cursor.execute("CREATE TABLE document (id integer PRIMARY KEY, body oid NOT NULL)")
            cursor.execute(
                "INSERT INTO document SELECT n, lo_from_bytea(0, decode(string_agg(md5("
                "(n * 100000 + k)::text), ''), 'hex')) FROM generate_series(1, %s) n, "
                "generate_series(1, 32768) k GROUP BY n",
                [large_objects],
            )
        cursor.execute("CREATE TABLE bulk (id integer, note text)")
        if connections[alias].vendor == "postgresql":  # one statement: 800k rows in seconds
            cursor.execute(
                "INSERT INTO bulk SELECT n, md5(n::text) FROM generate_series(1, %s) n", [rows]
            )
        else:
            cursor.execute(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                "INSERT INTO bulk SELECT n, hex(randomblob(16)) FROM s",
                [rows],
            )
        cursor.execute("CREATE INDEX bulk_note ON bulk (note)")
    done = run_child(alias, "backup", "--json", **env)
    assert done.returncode == 0, done.stderr
    add_a_row(alias)
    return json.loads(done.stdout)["id"]


def add_a_row(alias: str) -> None:
    """What the backup does not hold: the data is old with it, new without it."""
    with connections[alias].cursor() as cursor:
        cursor.execute("INSERT INTO bulk VALUES (0, 'after the backup')")


def sessions(alias: str) -> list[tuple]:
    """Client sessions on the test's own database other than the test's."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pid, application_name, state, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchall()


def running(alias: str, query: str) -> bool:
    """Another session on the test's database runs a statement LIKE ``query``."""
    return any(found.startswith(query) for *_, found in sessions(alias))


# Five kills of a restore, each placed a delay after the child's session is first seen
# running a statement: the safety backup's pg_dump at its start and later on, psql loading
# the table at its start and half a second on, and the index build near the end of the
# restore's transaction. In one run on the shared 2-core machine they landed 1.5, 2.4, 4.2,
# 4.2 and 5.6 s after the command started.
RESTORE_KILLS = (
    ("COPY public.bulk (id, note) TO stdout", 0.0),
    ("COPY public.bulk (id, note) TO stdout", 0.6),
    ("COPY public.bulk (id, note) FROM stdin", 0.0),
    ("COPY public.bulk (id, note) FROM stdin", 0.5),
    ("CREATE INDEX bulk_note", 0.0),
)


def test_a_postgresql_restore_killed_at_five_moments_leaves_nothing_and_old_or_new_data(
    db_alias, env
):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("pg_dump, pg_restore and psql are PostgreSQL's")
    backup_id = backed_up(db_alias, env, rows=BIG_ROWS)
    for statement, delay in RESTORE_KILLS:
        kill_a_restore(db_alias, env, backup_id, statement, delay)
        done = run_child(db_alias, "restore", backup_id, "--noinput", "--yes", **env)
        assert done.returncode == 0, done.stderr
        assert (bulk_rows(db_alias), bulk_indexed(db_alias)) == (BIG_ROWS, True)
        add_a_row(db_alias)
    assert scratch_dirs(env) == []


# Kills of a restore of an archive holding large objects, whose script migrator relays:
# loading the table, writing the large objects, and the index build after them (where
# pg_restore's own COMMIT after the large objects had ended the restore's transaction).
LARGE_OBJECT_KILLS = (
    ("COPY public.bulk (id, note) FROM stdin", 0.2),
    ("SELECT pg_catalog.lowrite", 0.0),
    ("CREATE INDEX bulk_note", 0.0),
)


def test_a_postgresql_restore_of_large_objects_killed_leaves_nothing_and_old_or_new_data(
    db_alias, env
):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("large objects, pg_restore and psql are PostgreSQL's")
    backup_id = backed_up(db_alias, env, large_objects=20)
    objects = documents(db_alias)
    for statement, delay in LARGE_OBJECT_KILLS:
        kill_a_restore(db_alias, env, backup_id, statement, delay, rows=ROWS, also=documents)
        assert documents(db_alias) == objects
        done = run_child(db_alias, "restore", backup_id, "--noinput", "--yes", **env)
        assert done.returncode == 0, done.stderr
        assert (bulk_rows(db_alias), bulk_indexed(db_alias)) == (ROWS, True)
        assert documents(db_alias) == objects
        add_a_row(db_alias)
    assert scratch_dirs(env) == []


def test_a_psql_outliving_a_killed_relayed_restore_commits_nothing(db_alias, env, tmp_path):
    """psql sees the end of its input when migrator dies before psql does (in the instant
    between the kernel closing the dead process's pipes and killing its children, or where
    there is no PR_SET_PDEATHSIG at all): what it has read is then no COMMIT. Here psql
    runs under a shell, the child that dies with migrator, so that it outlives it."""
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("large objects, pg_restore and psql are PostgreSQL's")
    backup_id = backed_up(db_alias, env, large_objects=2)
    real = Path(settings.MIGRATOR["PG_BIN_DIR"])
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        (tools / tool).symlink_to(real / tool)
    (tools / "psql").write_text(f"#!/bin/sh\n'{real / 'psql'}' \"$@\"\n")  # not exec
    (tools / "psql").chmod(0o755)
    outlived = {**env, "MIGRATOR_TEST_SETTINGS": json.dumps({"PG_BIN_DIR": str(tools)})}
    statement = "COPY public.bulk (id, note) FROM stdin"

    kill_a_restore(db_alias, outlived, backup_id, statement, 0.0, rows=ROWS, also=documents)

    done = run_child(db_alias, "restore", backup_id, "--noinput", "--yes", **outlived)
    assert done.returncode == 0, done.stderr
    assert (bulk_rows(db_alias), bulk_indexed(db_alias)) == (ROWS, True)


def documents(alias: str) -> list[tuple]:
    """Each large object the document table references, with the MD5 of its contents."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT id, body, md5(lo_get(body)) FROM document ORDER BY id")
        return cursor.fetchall()


def kill_a_restore(
    alias: str,
    env,
    backup_id: str,
    statement: str,
    delay: float,
    *,
    rows: int = BIG_ROWS,
    also=lambda alias: None,
) -> None:
    """kill -9 a restore ``delay`` s after its session runs ``statement``; then, within
    SETTLE, none of its processes and no session is left, and the data is old or new:
    the backup's ``rows``, indexed (``also(alias)``: the same in both). Either way the
    audit has the killed restore's run (a restore merges it back as it commits)."""
    old = bulk_rows(alias), bulk_indexed(alias)
    unchanged, restores = also(alias), restore_runs(alias)
    # The sessions of the command before are gone (their last statement could be ``statement``).
    wait_until(lambda: not sessions(alias), timeout=SETTLE, what="the sessions before")
    watched = Watched(start_child(alias, "restore", backup_id, "--noinput", "--yes", **env))
    watched.until(lambda: running(alias, statement), what=statement)
    moment = watched.kill_after(delay)
    when = f"killed {moment:.2f}s into the restore, {delay}s into {statement!r}"
    assert watched.spawned, when  # its pg_dump, or its pg_restore and psql
    wait_until(lambda: not watched.survivors(), timeout=SETTLE, what=f"the children ({when})")
    wait_until(lambda: not sessions(alias), timeout=SETTLE, what=f"the sessions ({when})")
    assert (bulk_rows(alias), bulk_indexed(alias)) in {old, (rows, True)}, when
    assert (also(alias), restore_runs(alias)) == (unchanged, restores + 1), when


def restore_runs(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM migrator_run WHERE command = 'restore'")
        return cursor.fetchone()[0]


def bulk_indexed(alias: str) -> bool:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return "bulk_note" in connection.introspection.get_constraints(cursor, "bulk")


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("command", ["safemigrate", "restore"])
def test_a_killed_runs_server_process_stops_with_it(db_alias, env, command):
    """kill -9 while the database works for the run (a migration's statement, a restore's
    wait for a table a reader holds): its server process ends within SETTLE instead of
    going on to the end of that work, holding its locks, and nothing is committed."""
    if command == "safemigrate":
        statement = "SELECT pg_sleep(600)"
        args = ("safemigrate", "scenarios", "--noinput")
        env = {**env, "MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.long_statement"}
    else:
        backup_id = backed_up(db_alias, env, rows=1000)
        wait_until(lambda: not sessions(db_alias), timeout=SETTLE, what="the backup's sessions")
        reader = raw_connection(db_alias, application_name="long report")
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bulk")  # ACCESS SHARE until it ends
        statement = "DO $migrator$\nDECLARE item record;"  # the prelude, waiting
        env = {**env, "MIGRATOR_TEST_SETTINGS": json.dumps({"PG_LOCK_TIMEOUT": 600})}
        args = ("restore", backup_id, "--noinput", "--yes")
    watched = Watched(start_child(db_alias, *args, **env))
    watched.until(lambda: running(db_alias, statement), what=statement)
    watched.kill_after(0.0)
    wait_until(lambda: not running(db_alias, statement), timeout=SETTLE, what="its statement")
    if command == "restore":
        reader.rollback()
        reader.close()
        assert bulk_rows(db_alias) == 1001  # the row added after the backup
    else:
        with connections[db_alias].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'scenarios'")
            assert cursor.fetchone()[0] == 0


def test_a_killed_backup_leaves_no_pg_dump_and_no_password_file(db_alias, env):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("pg_dump is PostgreSQL's")
    backed_up(db_alias, env)
    watched = Watched(start_child(db_alias, "backup", **env))
    watched.until(lambda: running(db_alias, "COPY public.bulk"), what="pg_dump to copy")
    [passfile] = [path / "pgpass" for path in scratch_dirs(env)]
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    watched.kill_after(0)
    assert watched.spawned
    wait_until(lambda: not watched.survivors(), timeout=SETTLE, what="pg_dump to die")
    wait_until(lambda: not sessions(db_alias), timeout=SETTLE, what="the sessions to end")
    assert passfile.exists()  # a kill -9 runs no clean-up: the next command sweeps it
    assert run_child(db_alias, "migrationstatus", **env).returncode == 0
    assert scratch_dirs(env) == []


# 24 kills of a SQLite restore, each a different delay after its working copy appears (the
# longest first: some of those restores finish), every restore sweeping what the kills
# before it left; the last kill, at once, leaves a copy for the next command to remove.
SQLITE_KILL_DELAYS = tuple(0.02 * n for n in reversed(range(24)))


def test_killed_sqlite_restores_leave_no_copy_after_the_next_command(db_alias, env):
    if connections[db_alias].vendor != "sqlite":
        pytest.skip("the working copy is SQLite's")
    backup_id = backed_up(db_alias, env)
    leftovers: set[Path] = set()
    for delay in SQLITE_KILL_DELAYS:
        if bulk_rows(db_alias) == ROWS:  # restored: old and new must differ again
            add_a_row(db_alias)
        leftovers = kill_a_sqlite_restore(db_alias, env, backup_id, delay, leftovers)
    assert leftovers  # the last kill left its copy, which the next command removes
    assert run_child(db_alias, "migrationstatus", **env).returncode == 0
    assert scratch_dirs(env) == []


def kill_a_sqlite_restore(alias: str, env, backup_id: str, delay: float, before: set[Path]):
    """kill -9 a restore ``delay`` s after its 0600 working copy appears (``before``: the
    scratch directories already there); returns the scratch directories left."""
    old = bulk_rows(alias)
    watched = Watched(start_child(alias, "restore", backup_id, "--noinput", "--yes", **env))
    modes: dict[Path, int] = {}  # of each new working copy, when first seen

    def copied() -> bool:
        for directory in set(scratch_dirs(env)) - before:
            with suppress(FileNotFoundError):  # another scratch directory, or just removed
                modes[directory] = stat.S_IMODE(os.stat(directory / "restore.sqlite3").st_mode)
        return bool(modes)

    watched.until(copied, what="a new working copy")
    assert set(modes.values()) == {0o600}
    watched.kill_after(delay)
    wait_until(lambda: not watched.survivors(), timeout=SETTLE, what="the children to die")
    assert bulk_rows(alias) in {old, ROWS}  # wholly old or wholly new
    return set(scratch_dirs(env))


def test_a_sweep_as_a_scratch_directory_is_made_leaves_it_to_its_process(monkeypatch, tmp_path):
    """Another command's sweep between the creation of a directory's owner file and its
    lock must not take the directory of a live process for a killed one's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    swept = sweep_before_locking(
        monkeypatch, lambda path: path.parent.name.startswith(scratch.PREFIX), scratch.sweep
    )
    with scratch.private_directory("race") as path:
        assert len(swept) == 1
        assert path.is_dir()
        (path / "password").write_text("in use")
    assert not path.exists()


def test_a_scratch_directory_killed_while_it_is_removed_is_swept_at_once(monkeypatch, tmp_path):
    """Its owner file already gone, it would look like one being made (kept an hour); the
    rename before the removal says otherwise. A kill -9 there is what CI's kill test hit."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = []
    monkeypatch.setattr(scratch.shutil, "rmtree", lambda path, **_: killed.append(path))
    with scratch.private_directory("restore") as path:
        (path / "restore.sqlite3").write_bytes(b"a working copy")
    [left] = killed
    (left / scratch.OWNER).unlink()  # as far as the removal got
    being_made = tmp_path / f"{scratch.PREFIX}restore-new"
    being_made.mkdir()
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    assert scratch.sweep() == 1
    assert sorted(tmp_path.iterdir()) == [being_made]  # still within its grace
