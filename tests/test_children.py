"""Child processes die with migrator, and what a kill leaves behind is swept.

Real children killed with SIGKILL at a moment the test observes (the tool process exists,
or the scratch directory does); the processes looked for are found by paths unique to
the test, never by name.
"""

import json
import os
import stat
import time
from pathlib import Path

import pytest
from django.db import connections

from tests.utils import run_child, start_child

PASSWORD = "pw-Never-Shown-42"  # noqa: S105  (trusted locally; only its file matters)
ROWS = 300_000
SETTLE = 15.0  # seconds the server may take to notice a dropped connection


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds ``text`` (a path unique to this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().split(") ", 1)[1][0]
            except (OSError, IndexError):
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


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


def backed_up(alias: str, env) -> str:
    """The demo migrated, a big table, and a backup of it; then more rows than backed up."""
    assert run_child(alias, "safemigrate", "--noinput", **env).returncode == 0
    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TABLE bulk (id integer, note text)")
        series = "generate_series(1, %s)" if connections[alias].vendor == "postgresql" else None
        if series:
            cursor.execute(f"INSERT INTO bulk SELECT n, md5(n::text) FROM {series} n", [ROWS])
        else:
            cursor.execute(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                "INSERT INTO bulk SELECT n, hex(randomblob(16)) FROM s",
                [ROWS],
            )
    done = run_child(alias, "backup", "--json", **env)
    assert done.returncode == 0, done.stderr
    with connections[alias].cursor() as cursor:
        cursor.execute("INSERT INTO bulk VALUES (0, 'after the backup')")
    return json.loads(done.stdout)["id"]


def our_sessions(alias: str) -> int:
    name = connections[alias].settings_dict["NAME"]
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'migrator backup'",
            [name],
        )
        return cursor.fetchone()[0]


def test_a_killed_postgresql_restore_leaves_no_psql_no_session_and_old_data(db_alias, env):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("psql and pg_restore are PostgreSQL's")
    backup_id = backed_up(db_alias, env)
    connections[db_alias].close()
    child = start_child(db_alias, "restore", backup_id, "--noinput", "--yes", **env)
    wait_until(lambda: processes_mentioning(env["TMPDIR"]), what="psql to start")
    kill(child)
    wait_until(lambda: not processes_mentioning(env["TMPDIR"]), timeout=SETTLE, what="psql")
    wait_until(lambda: our_sessions(db_alias) == 0, timeout=SETTLE, what="the session")
    assert not processes_mentioning(env["MIGRATOR_TEST_BACKUP_DIR"])  # pg_restore
    assert bulk_rows(db_alias) == ROWS + 1  # all old: the restore never committed
    connections[db_alias].close()
    done = run_child(db_alias, "restore", backup_id, "--noinput", "--yes", **env)
    assert done.returncode == 0, done.stderr  # stderr: the killed restore, now interrupted
    assert bulk_rows(db_alias) == ROWS
    assert scratch_dirs(env) == []


def test_a_killed_backup_leaves_no_pg_dump_and_no_password_file(db_alias, env):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("pg_dump is PostgreSQL's")
    backed_up(db_alias, env)
    child = start_child(db_alias, "backup", **env)
    wait_until(
        lambda: processes_mentioning(env["MIGRATOR_TEST_BACKUP_DIR"]), what="pg_dump to start"
    )
    [passfile] = [path / "pgpass" for path in scratch_dirs(env)]
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    kill(child)
    wait_until(
        lambda: not processes_mentioning(env["MIGRATOR_TEST_BACKUP_DIR"]),
        timeout=SETTLE,
        what="pg_dump to die with its parent",
    )
    assert passfile.exists()  # a kill -9 runs no clean-up: the next command sweeps it
    assert run_child(db_alias, "migrationstatus", **env).returncode == 0
    assert scratch_dirs(env) == []


def test_killed_sqlite_restores_leave_no_copy_after_the_next_command(db_alias, env):
    if connections[db_alias].vendor != "sqlite":
        pytest.skip("the working copy is SQLite's")
    backup_id = backed_up(db_alias, env)
    seen: set[Path] = set()
    for _ in range(3):  # each restore also sweeps what the previous kill left
        child = start_child(db_alias, "restore", backup_id, "--noinput", "--yes", **env)
        wait_until(
            lambda: any((d / "restore.sqlite3").exists() for d in set(scratch_dirs(env)) - seen),
            what="a new working copy",
        )
        kill(child)
        [copy] = [d / "restore.sqlite3" for d in set(scratch_dirs(env)) - seen]
        assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
        seen.add(copy.parent)
    assert len(scratch_dirs(env)) == 1
    assert run_child(db_alias, "migrationstatus", **env).returncode == 0
    assert scratch_dirs(env) == []
    assert bulk_rows(db_alias) in {ROWS, ROWS + 1}  # wholly new or wholly old
