"""``RESTORE_JOBS``: a native PostgreSQL restore in parallel into a new database, swapped in.

Each test restores the demo project's seeded rows over changed ones; the database under
test is then either the restored copy under the same name (a new OID, the replaced one
kept beside it) or, where the swap cannot hold, restored in one transaction as usual.
"""

import json
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connections, transaction

from migrator.backup import swap
from migrator.models import Run
from tests import test_children
from tests.conftest import _admin_execute, databases_named, drop_test_database
from tests.test_backup import (
    _tamper,
    change_everything,
    large_objects,
    large_objects_changed_after_a_backup,
    seed,
    snapshot,
    take_backup,
)
from tests.test_children import (
    BIG_ROWS,
    SETTLE,
    Watched,
    add_a_row,
    alive,
    backed_up,
    bulk_indexed,
    bulk_rows,
    proc_stat,
    wait_until,
)
from tests.test_locking import wait_for_line_starting
from tests.test_rollback import SCRIPTED, ledger_with_a_restorable_run, names, rollback_runs
from tests.utils import (
    TTYInput,
    bin_with,
    fifos,
    raw_connection,
    run_child,
    run_command,
    start_child,
)

env = test_children.env  # the children's own TMPDIR and backup directory

SWAPPING = "Restoring with pg_restore --jobs 2 into a new database, to swap in..."
SERIAL = "Restoring in one transaction, not in parallel into a new database: "

# pg_restore that, starting to fill with --jobs, writes its pid to the FIFO "paused" and
# waits for a line on the FIFO "go" before it goes on (its second step goes on at once).
PAUSING_PG_RESTORE = """#!/bin/sh
case " $* " in
  *" --section=post-data "*) ;;
  *" --jobs="*) echo $$ > {paused}; read line < {go};;
esac
exec {real}/pg_restore "$@"
"""

# pg_dump that reports its version, and fails at anything else.
FAILING_PG_DUMP = """#!/bin/sh
case "$1" in --version) exec {real}/pg_dump --version;; esac
echo "pg_dump: error: refused by the test" >&2
exit 1
"""


@pytest.fixture(autouse=True)
def backup_dir(settings, tmp_path) -> Path:
    directory = tmp_path / "backups"
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(directory), "RESTORE_JOBS": 2}
    return directory


@pytest.fixture
def postgres(db_alias) -> str:
    """The PostgreSQL database under test (its fixture drops what swaps left beside it)."""
    return db_alias


# A tool that fails at one step of a parallel restore (its arguments hold ``step``) with a
# line on stderr, and runs as usual otherwise.
FAILING_STEP = """#!/bin/sh
case " $* " in *"{step}"*) echo "{name}: error: refused by the test" >&2; exit 1;; esac
exec {real}/{name} "$@"
"""

# The indexes and constraints of the test's tables, as the catalogs describe them.
INDEXES_AND_CONSTRAINTS = """
    SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'index', indrelid::regclass::text, indexrelid::regclass::text,
        pg_get_indexdef(indexrelid), indisvalid
    FROM pg_index JOIN pg_class ON pg_class.oid = indrelid
    WHERE relnamespace = 'public'::regnamespace
    ORDER BY 1, 2, 3"""
# seed()'s tables whose pages are not all visible (a VACUUM makes them so; nothing writes
# to them after a restore, unlike migrator's own, where the live audit goes).
NOT_VACUUMED = """
    SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
    AND relname IN ('ledger_account', 'ledger_entry', 'auth_user', 'auth_group',
        'auth_user_groups') AND relallvisible < relpages"""


def databases(prefix: str) -> list[str]:
    return databases_named("postgres", prefix)


def oid(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def changed_after_a_backup(alias: str) -> tuple[str, dict, dict]:
    seed(alias)
    before = snapshot(alias)
    backup_id = take_backup(alias)
    change_everything(alias)
    return backup_id, before, snapshot(alias)


def pausing_bin(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A PG_BIN_DIR whose pg_restore --jobs stops at the FIFOs ``paused`` and ``go``."""
    paused, go = fifos(tmp_path, "paused", "go")
    return bin_with(tmp_path, "pg_restore", PAUSING_PG_RESTORE, paused=paused, go=go), paused, go


@dataclass
class PausedRestore:
    """A child ``restore`` of changed rows, stopped in pg_restore --jobs."""

    backup_id: str
    before: dict  # the rows backed up
    changed: dict  # the rows the restore replaces
    oid: int  # of the database before the restore
    child: subprocess.Popen
    pg_restore: tuple[int, int]  # pid and start time
    go: Path  # a line written to it lets pg_restore go on


def paused_restore(alias: str, backup_dir: Path, tmp_path: Path) -> PausedRestore:
    backup_id, before, changed = changed_after_a_backup(alias)
    old_oid = oid(alias)
    bin_dir, paused, go = pausing_bin(tmp_path)
    connections[alias].close()
    child = start_child(
        alias,
        "restore",
        backup_id,
        "--yes",
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        MIGRATOR_TEST_SETTINGS=f'{{"RESTORE_JOBS": 2, "PG_BIN_DIR": "{bin_dir}"}}',
    )
    pid = int(paused.read_text())
    return PausedRestore(
        backup_id, before, changed, old_oid, child, (pid, proc_stat(pid).started), go
    )


def restored_by_a_swap(alias: str, backup_id: str, before: dict) -> str:
    """``restore`` run and found to have swapped a new database in; the replaced one's name."""
    old_oid = oid(alias)

    out, err, code = run_command("restore", backup_id, "--yes", database=alias, verbosity=2)

    assert (code, err) == (0, ""), err
    assert SWAPPING in out
    assert snapshot(alias) == before
    assert oid(alias) != old_oid
    [replaced] = databases("migrator_replaced_")
    assert f"The database it replaced is kept as {replaced} until the next such restore." in out
    return replaced


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_restore_with_restore_jobs_swaps_a_new_database_in(postgres):
    backup_id, before, _ = changed_after_a_backup(postgres)

    replaced = restored_by_a_swap(postgres, backup_id, before)

    run = Run.objects.using(postgres).get(command="restore")
    assert (run.outcome, run.details["restored_backup"]) == ("succeeded", backup_id)
    with connections[postgres].cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [replaced],
        )
        comment = cursor.fetchone()[0]
    name = connections[postgres].settings_dict["NAME"]
    assert comment.startswith(f"migrator: {name} as it was before backup {backup_id} ")
    assert databases("migrator_restore_") == []

    out, err, code = run_command("restore", backup_id, "--yes", "--json", database=postgres)
    assert (code, err) == (0, ""), err
    assert snapshot(postgres) == before
    assert len(databases("migrator_replaced_")) == 1  # the earlier one went
    assert databases("migrator_replaced_") != [replaced]
    assert json.loads(out)["replaced_database"] == databases("migrator_replaced_")[0]
    runs = Run.objects.using(postgres).filter(command="restore").values_list("outcome", flat=True)
    assert list(runs) == ["succeeded", "succeeded"]


def catalog(alias: str, sql: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_with_foreign_keys_restores_them_after_a_vacuum(postgres):
    backup_id, before, _ = changed_after_a_backup(postgres)
    schema = catalog(postgres, INDEXES_AND_CONSTRAINTS)
    assert any("FOREIGN KEY" in definition for _, _, _, definition, _ in schema)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert (code, err) == (0, ""), err
    assert SWAPPING in out
    assert snapshot(postgres) == before
    assert catalog(postgres, INDEXES_AND_CONSTRAINTS) == schema  # validated, as they were
    assert catalog(postgres, NOT_VACUUMED) == []  # vacuumed before the foreign keys' checks


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("tool", "step"),
    [("psql", "/vacuum-"), ("pg_restore", "--section=post-data")],
    ids=["vacuum", "post-data"],
)
def test_a_parallel_restore_failing_at_its_second_step_changes_nothing(
    postgres, settings, tmp_path, tool, step
):
    backup_id, _, changed = changed_after_a_backup(postgres)
    old_oid = oid(postgres)
    bin_dir = bin_with(tmp_path, tool, FAILING_STEP, step=step, name=tool)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(bin_dir)}

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert code == 6
    assert SWAPPING in out
    assert err.startswith(f"Restore into {postgres!r} failed"), err
    assert f"{tool}: error: refused by the test" in err
    assert snapshot(postgres) == changed
    assert oid(postgres) == old_oid
    assert Run.objects.using(postgres).get(command="restore").outcome == "failed"
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_brings_large_objects_back(postgres):
    backup_id, before = large_objects_changed_after_a_backup(postgres)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert (code, err) == (0, ""), err
    assert SWAPPING in out
    assert (snapshot(postgres), large_objects(postgres)) == before


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("obstacle", "expected"),
    [
        ("session", "1 other session(s) are connected to it"),
        ("setting", "the database has settings of its own (ALTER DATABASE ... SET)"),
        ("grant", "the database has grants of its own"),
        ("subscription", "the database has subscriptions (logical replication)"),
    ],
)
def test_a_restore_with_restore_jobs_that_cannot_swap_runs_in_one_transaction(
    postgres, obstacle, expected
):
    backup_id, before, _ = changed_after_a_backup(postgres)
    old_oid = oid(postgres)
    name = connections[postgres].settings_dict["NAME"]
    other = raw_connection(postgres)
    if obstacle == "setting":
        _admin_execute(postgres, f"ALTER DATABASE \"{name}\" SET work_mem = '8MB'")
    elif obstacle == "grant":
        _admin_execute(postgres, f'GRANT CONNECT ON DATABASE "{name}" TO PUBLIC')
    elif obstacle == "subscription":  # never connects: its publisher is nowhere
        with other.cursor() as cursor:
            cursor.execute(
                "CREATE SUBSCRIPTION migrator_test CONNECTION 'dbname=nowhere' "
                "PUBLICATION nothing WITH (connect = false)"
            )
        other.commit()
    if obstacle != "session":
        other.close()
    try:
        out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)
    finally:
        other.close()
        if obstacle == "subscription":
            with connections[postgres].cursor() as cursor:
                cursor.execute("ALTER SUBSCRIPTION migrator_test SET (slot_name = NONE)")
                cursor.execute("DROP SUBSCRIPTION migrator_test")

    assert (code, err) == (0, ""), err
    assert f"{SERIAL}{expected}." in out
    assert "The database it replaced" not in out
    assert snapshot(postgres) == before
    assert oid(postgres) == old_oid
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


def unset_restore_jobs(settings) -> None:
    settings.MIGRATOR = {k: v for k, v in settings.MIGRATOR.items() if k != "RESTORE_JOBS"}


def emptied(alias: str) -> None:
    """Every table dropped: the database as a new one is, for a restore into it."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public'"
        )
        [tables] = cursor.fetchone()
        cursor.execute(f"DROP TABLE {tables} CASCADE")


def backed_up_then_emptied(alias: str) -> tuple[str, dict]:
    seed(alias)
    before = snapshot(alias)
    backup_id = take_backup(alias)
    emptied(alias)
    return backup_id, before


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_by_default_a_restore_into_an_empty_database_runs_in_parallel(postgres, settings):
    unset_restore_jobs(settings)
    backup_id, before = backed_up_then_emptied(postgres)

    restored_by_a_swap(postgres, backup_id, before)

    assert Run.objects.using(postgres).get(command="restore").outcome == "succeeded"


# What a database may hold besides tables that keeps a restore, RESTORE_JOBS unset, in one
# transaction: the new database would not have it.
OWN_OBJECTS = {
    "function": "CREATE FUNCTION kept() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "type": "CREATE TYPE kept AS ENUM ('one')",
    "domain": "CREATE DOMAIN kept AS int",
    "schema": "CREATE SCHEMA kept",
    "view": "CREATE VIEW kept AS SELECT 1 AS one",
    "sequence": "CREATE SEQUENCE kept",
    "collation": "CREATE COLLATION kept (provider = libc, locale = 'C')",
    "text search dictionary": "CREATE TEXT SEARCH DICTIONARY kept (TEMPLATE = simple)",
    "cast": "CREATE CAST (date AS int) WITH INOUT",
    "large object": "SELECT lo_create(0)",
    "default privileges": "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
    "publication": "CREATE PUBLICATION kept",
}


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_database_holding_any_object_of_its_own_is_not_empty(postgres):
    connection = connections[postgres]
    assert not swap.holds_objects(connection)  # as CREATE DATABASE made it
    assert run_command("safemigrate", "migrator", "--no-backup", database=postgres)[2] == 0
    assert not swap.holds_objects(connection)  # migrator's tables, django_migrations
    for kind, sql in OWN_OBJECTS.items():
        with transaction.atomic(using=postgres), connection.cursor() as cursor:
            cursor.execute(sql)
            assert swap.holds_objects(connection), kind
            transaction.set_rollback(True, using=postgres)
        assert not swap.holds_objects(connection), kind


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("held", ["rows", "function"])
def test_by_default_a_restore_into_a_database_that_holds_anything_runs_in_one_transaction(
    postgres, settings, held
):
    unset_restore_jobs(settings)
    if held == "rows":
        backup_id, before, _ = changed_after_a_backup(postgres)
    else:
        backup_id, before = backed_up_then_emptied(postgres)
        with connections[postgres].cursor() as cursor:
            cursor.execute(OWN_OBJECTS[held])
    old_oid = oid(postgres)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert (code, err) == (0, ""), err
    assert "--jobs" not in out
    assert SERIAL not in out  # the usual route: nothing to explain
    assert snapshot(postgres) == before
    assert oid(postgres) == old_oid
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("createdb", [False, True], ids=["no createdb", "createdb"])
def test_a_default_restore_into_an_empty_database_by_its_owner_not_a_superuser(
    postgres, settings, createdb
):
    """As an application's role usually is: the route's checks read what such a role may
    read, and it is taken only where the role may create databases."""
    unset_restore_jobs(settings)
    backup_id, before = backed_up_then_emptied(postgres)
    connection = connections[postgres]
    name, superuser = connection.settings_dict["NAME"], connection.settings_dict["USER"]
    role = f"migrator_owner_{uuid.uuid4().hex[:8]}"
    _admin_execute(postgres, f'CREATE ROLE "{role}" LOGIN {"CREATEDB" if createdb else ""}')
    _admin_execute(postgres, f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    connections.close_all()
    connection.settings_dict["USER"] = role
    try:
        out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

        assert (code, err) == (0, ""), err
        assert snapshot(postgres) == before
        if createdb:
            assert SWAPPING in out
        else:
            assert f"{SERIAL}the role may not create databases (CREATEDB)." in out
    finally:
        connections.close_all()
        connection.settings_dict["USER"] = superuser
        drop_test_database(postgres, name)
        _admin_execute(postgres, f'DROP ROLE "{role}"')


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_default_restore_the_server_refuses_a_new_database_runs_in_one_transaction(
    postgres, settings, new_databases_refused
):
    unset_restore_jobs(settings)
    backup_id, before = backed_up_then_emptied(postgres)
    old_oid = oid(postgres)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert (code, err) == (0, ""), err
    assert out.count(SWAPPING) == 1  # tried once, before the lock, not again under it
    assert f"{SERIAL}the server does not let this role into a new database (" in out
    assert "pg_hba.conf rejects connection" in out
    assert snapshot(postgres) == before
    assert oid(postgres) == old_oid
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_restore_with_restore_jobs_the_server_refuses_a_new_database_fails_changing_nothing(
    postgres, new_databases_refused
):
    backup_id, _ = backed_up_then_emptied(postgres)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres)

    assert code == 6
    assert err.startswith(
        f"Restore into {postgres!r} cannot run in parallel: the server does not "
        "let this role into a new database ("
    ), err
    assert "set MIGRATOR['RESTORE_JOBS'] = 1 to restore in one transaction." in err
    assert len(err.splitlines()) == 1
    assert not swap.holds_objects(connections[postgres])  # as empty as it was
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_default_restore_into_an_empty_database_killed_leaves_it_empty(
    postgres, settings, backup_dir, tmp_path
):
    unset_restore_jobs(settings)
    backup_id, before = backed_up_then_emptied(postgres)
    old_oid = oid(postgres)
    bin_dir, paused, _ = pausing_bin(tmp_path)
    connections[postgres].close()
    child = start_child(
        postgres,
        *("restore", backup_id, "--yes"),
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        MIGRATOR_TEST_SETTINGS=json.dumps({"PG_BIN_DIR": str(bin_dir)}),
    )
    try:
        pid = int(paused.read_text())  # pg_restore --jobs, stopped
        pg_restore = (pid, proc_stat(pid).started)
        [scratch] = databases("migrator_restore_")
        wait_until(
            lambda: (
                "migrator_run" in connections[postgres].introspection.table_names()
                and restore_running(postgres)
            ),
            what="migrator's tables made and the restore's run opened, meanwhile",
        )
    finally:
        child.kill()  # kill -9, while the new database is being filled
        child.communicate(timeout=60)
    wait_until(lambda: not alive(pg_restore), what="the killed restore's pg_restore")

    assert oid(postgres) == old_oid
    assert "ledger_account" not in connections[postgres].introspection.table_names()
    assert databases("migrator_restore_") == [scratch]

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert code == 0, err
    assert "ended without finishing (killed or lost); recorded as interrupted." in err
    assert SWAPPING in out  # migrator's own tables, and its record of the kill, are not objects
    assert snapshot(postgres) == before
    assert databases("migrator_restore_") == []
    outcomes = Run.objects.using(postgres).filter(command="restore").order_by("started_at")
    assert [run.outcome for run in outcomes] == ["interrupted", "succeeded"]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_two_default_restores_into_an_empty_database_at_once_restore_it(
    postgres, settings, backup_dir
):
    unset_restore_jobs(settings)
    backup_id, before = backed_up_then_emptied(postgres)
    connections[postgres].close()
    children = [
        start_child(
            postgres,
            *("restore", backup_id, "--yes", "--noinput"),
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
            MIGRATOR_TEST_SETTINGS='{"RUN_LOCK_TIMEOUT": 120}',
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]

    codes = sorted(child.returncode for child in children)
    assert codes in ([0, 0], [0, 6]), outputs
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0 or "nothing was changed" in err, err
    assert snapshot(postgres) == before
    assert databases("migrator_restore_") == []
    outcomes = Run.objects.using(postgres).filter(command="restore").values_list("outcome")
    assert sorted(outcome for (outcome,) in outcomes) in (
        ["succeeded", "succeeded"],
        ["failed", "succeeded"],
    )


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_restore_jobs_leaves_a_sqlite_restore_as_it_is(db_alias):
    backup_id, before, _ = changed_after_a_backup(db_alias)

    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias, verbosity=2)

    assert (code, err) == (0, ""), err
    assert "RESTORE_JOBS" not in out
    assert "--jobs" not in out
    assert snapshot(db_alias) == before


@pytest.mark.parametrize("value", [0, "two"])
def test_a_bad_restore_jobs_setting_is_refused(db_alias, settings, value):
    settings.MIGRATOR = {**settings.MIGRATOR, "RESTORE_JOBS": value}

    _, err, code = run_command("restore", "default-20260101T000000Z-000000", database=db_alias)

    assert code == 1
    assert err.startswith(f"MIGRATOR['RESTORE_JOBS'] is {value!r}: must be")


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_session_that_connects_during_a_parallel_restore_stops_the_swap(
    postgres, backup_dir, tmp_path
):
    paused = paused_restore(postgres, backup_dir, tmp_path)
    other = raw_connection(postgres)  # connects while the new database is being filled
    try:
        paused.go.write_text("go\n")
        _, err = paused.child.communicate(timeout=300)
    finally:
        other.close()

    assert paused.child.returncode == 6, err
    assert "Restore into 'default' was not swapped in, nothing was changed: " in err
    assert "is being accessed by other users" in err
    assert snapshot(postgres) == paused.changed
    assert oid(postgres) == paused.oid
    assert Run.objects.using(postgres).get(command="restore").outcome == "failed"
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_killed_leaves_the_database_and_the_next_one_sweeps(
    postgres, backup_dir, tmp_path
):
    paused = paused_restore(postgres, backup_dir, tmp_path)
    [scratch] = databases("migrator_restore_")
    wait_until(lambda: restore_running(postgres), what="the restore's run, opened meanwhile")

    paused.child.kill()  # kill -9, while the new database is being filled
    paused.child.communicate(timeout=60)
    wait_until(lambda: not alive(paused.pg_restore), what="the killed restore's pg_restore")

    assert snapshot(postgres) == paused.changed
    assert oid(postgres) == paused.oid
    assert databases("migrator_restore_") == [scratch]
    assert databases("migrator_replaced_") == []

    out, err, code = run_command("restore", paused.backup_id, "--yes", database=postgres)

    assert (code, err) == (0, ""), err
    assert snapshot(postgres) == paused.before
    assert databases("migrator_restore_") == []
    outcomes = Run.objects.using(postgres).filter(command="restore").order_by("pk")
    assert [run.outcome for run in outcomes] == ["interrupted", "succeeded"]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_killed_parallel_restores_new_database_is_dropped_by_a_restore_in_one_transaction(
    postgres, backup_dir, tmp_path, settings
):
    """A database restored in one transaction from then on (it holds data again) would
    otherwise keep the killed one's copy of its data for good."""
    paused = paused_restore(postgres, backup_dir, tmp_path)
    [scratch] = databases("migrator_restore_")
    paused.child.kill()
    paused.child.communicate(timeout=60)
    wait_until(lambda: not alive(paused.pg_restore), what="the killed restore's pg_restore")
    settings.MIGRATOR = {**settings.MIGRATOR, "RESTORE_JOBS": 1}

    out, err, code = run_command(
        "restore", paused.backup_id, "--yes", database=postgres, verbosity=2
    )

    assert (code, err) == (0, ""), err
    assert SWAPPING not in out
    assert snapshot(postgres) == paused.before
    assert oid(postgres) == paused.oid  # restored in place
    assert scratch not in databases("migrator_restore_")
    assert databases("migrator_restore_") == []


def held_database(watcher, name: str) -> None:
    """Hold a lock on database ``name`` until ``watcher``'s transaction ends: a rename of it
    (ACCESS EXCLUSIVE) waits meanwhile; COMMENT ON takes SHARE UPDATE EXCLUSIVE."""
    with watcher.cursor() as cursor:
        cursor.execute(f"COMMENT ON DATABASE {connections['postgres'].ops.quote_name(name)} IS ''")


def waiting_to_rename(watcher, name: str) -> bool:
    """A session waits for a lock, renaming database ``name`` to the test database's name."""
    target = connections["postgres"].settings_dict["NAME"]
    with watcher.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query = %s",
            [f'ALTER DATABASE "{name}" RENAME TO "{target}"'],
        )
        return cursor.fetchone() is not None


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("signum", "how"),
    [(signal.SIGKILL, "kill -9"), (signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")],
    ids=["kill-9", "ctrl-c", "sigterm"],
)
def test_a_parallel_restore_stopped_between_its_two_renames_changes_nothing(
    postgres, backup_dir, tmp_path, signum, how
):
    """The swap's renames are one transaction: a stop after the first, the second waiting
    for a lock, leaves the database under its name, as it was; the next restore sweeps."""
    paused = paused_restore(postgres, backup_dir, tmp_path)
    [scratch] = databases("migrator_restore_")
    holder = raw_connection(postgres, dbname="postgres")
    watcher = raw_connection(postgres, dbname="postgres")  # pg_stat_activity: a fresh view
    watcher.autocommit = True  # at each statement, not one fixed for a transaction
    try:
        held_database(holder, scratch)
        paused.go.write_text("go\n")
        wait_until(lambda: waiting_to_rename(watcher, scratch), what="the swap's second rename")
        paused.child.send_signal(signum)  # the database already renamed away in the swap
        if signum == signal.SIGKILL:
            paused.child.communicate(timeout=60)
        holder.rollback()  # the rename goes on, then rolls back: its client is gone, or stops
        _, err = paused.child.communicate(timeout=60)
        wait_until(lambda: not waiting_to_rename(watcher, scratch), what="the rename to end")
        wait_until(lambda: not running(watcher, ""), timeout=SETTLE, what="the restore's sessions")
    finally:
        holder.close()
        watcher.close()

    assert snapshot(postgres) == paused.changed
    assert oid(postgres) == paused.oid
    assert databases("migrator_replaced_") == []
    if signum != signal.SIGKILL:
        said = (
            f"Restore of {paused.backup_id} into 'default' stopped by {how}; the run is "
            "recorded as interrupted."
        )
        assert (paused.child.returncode, err) == (5, f"CommandError: {said}\n")
        assert Run.objects.using(postgres).get(command="restore").outcome == "interrupted"

    out, err, code = run_command("restore", paused.backup_id, "--yes", database=postgres)

    assert code == 0, err
    assert snapshot(postgres) == paused.before
    assert databases("migrator_restore_") == []
    outcomes = Run.objects.using(postgres).filter(command="restore").order_by("pk")
    assert [run.outcome for run in outcomes] == ["interrupted", "succeeded"]


# Five kills of a parallel restore, each a delay after a session is first seen running a
# statement: the safety backup's pg_dump in the database, then, in the new database,
# pg_restore --jobs loading the table at its start and later on, the VACUUM before its
# second step, and that step's index build.
PARALLEL_KILLS = (
    ("COPY public.bulk (id, note) TO stdout", 0.3),
    ("COPY public.bulk (id, note) FROM stdin", 0.0),
    ("COPY public.bulk (id, note) FROM stdin", 0.4),
    ("VACUUM (SKIP_LOCKED) public.bulk", 0.0),
    ("CREATE INDEX bulk_note", 0.0),
)


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_killed_at_five_moments_leaves_old_or_new_data(postgres, env):
    env["MIGRATOR_TEST_SETTINGS"] = '{"RESTORE_JOBS": 2}'
    backup_id = backed_up(postgres, env, rows=BIG_ROWS)
    watcher = raw_connection(postgres, dbname="postgres")  # a session in it would stop swaps
    watcher.autocommit = True
    try:
        for statement, delay in PARALLEL_KILLS:
            old = bulk_rows(postgres), bulk_indexed(postgres)
            connections[postgres].close()
            watched = Watched(
                start_child(postgres, "restore", backup_id, "--noinput", "--yes", **env)
            )
            watched.until(lambda s=statement: running(watcher, s), what=statement)
            moment = watched.kill_after(delay)
            when = f"killed {moment:.2f}s in, {delay}s into {statement!r}"
            assert watched.spawned, when
            wait_until(
                lambda w=watched: not w.survivors(), timeout=SETTLE, what=f"children ({when})"
            )
            wait_until(lambda: not running(watcher, ""), timeout=SETTLE, what=f"sessions ({when})")
            assert (bulk_rows(postgres), bulk_indexed(postgres)) in {old, (BIG_ROWS, True)}, when
            connections[postgres].close()
            done = run_child(postgres, "restore", backup_id, "--noinput", "--yes", **env)
            assert done.returncode == 0, done.stderr
            assert (bulk_rows(postgres), bulk_indexed(postgres)) == (BIG_ROWS, True)
            add_a_row(postgres)
    finally:
        watcher.close()
    assert databases("migrator_restore_") == []
    assert len(databases("migrator_replaced_")) == 1


# An index whose build sleeps for ten minutes in a parallel restore's new database, where
# the restore's sessions were started with the setting migrator_test.slow on.
SLOW_INDEX = """
CREATE FUNCTION slow_key(integer) RETURNS integer IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  IF starts_with(current_database(), 'migrator_restore_')
    AND current_setting('migrator_test.slow', true) = 'on' THEN
    PERFORM pg_sleep(600);
  END IF;
  RETURN $1;
END $$;
CREATE TABLE slow (id integer PRIMARY KEY);
INSERT INTO slow VALUES (1);
CREATE INDEX slow_built ON slow (slow_key(id));
"""


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_killed_during_an_index_build_is_swept_with_its_sessions(postgres, env):
    """pg_restore's workers outlive their killed leader to the end of their statement: the
    next restore drops the new database all the same, which ends their sessions."""
    env["MIGRATOR_TEST_SETTINGS"] = '{"RESTORE_JOBS": 2}'
    assert run_child(postgres, "safemigrate", "--noinput", **env).returncode == 0
    with connections[postgres].cursor() as cursor:
        cursor.execute(SLOW_INDEX)
    done = run_child(postgres, "backup", "--json", **env)
    assert done.returncode == 0, done.stderr
    backup_id = json.loads(done.stdout)["id"]
    connections[postgres].close()
    watcher = raw_connection(postgres, dbname="postgres")
    watcher.autocommit = True
    try:
        slow = {**env, "PGOPTIONS": "-c migrator_test.slow=on"}
        watched = Watched(start_child(postgres, "restore", backup_id, "--noinput", "--yes", **slow))
        watched.until(lambda: running(watcher, "CREATE INDEX slow_built"), what="the index build")
        watched.kill_after(0)
        assert running(watcher, "CREATE INDEX slow_built")  # a worker's, building on

        done = run_child(postgres, "restore", backup_id, "--noinput", "--yes", **env)

        assert done.returncode == 0, done.stderr
        wait_until(lambda: not running(watcher, ""), timeout=SETTLE, what="the sessions")
        wait_until(lambda: not watched.survivors(), timeout=SETTLE, what="the workers")
    finally:
        watcher.close()
    assert databases("migrator_restore_") == []
    with connections[postgres].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM slow")
        assert cursor.fetchone() == (1,)


def restore_running(alias: str) -> bool:
    return Run.objects.using(alias).filter(command="restore", outcome="running").exists()


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_restore_started_while_a_parallel_one_fills_waits_and_the_swap_gives_way(
    postgres, backup_dir, tmp_path
):
    paused = paused_restore(postgres, backup_dir, tmp_path)
    wait_until(lambda: restore_running(postgres), what="the parallel restore's run lock")
    connections[postgres].close()
    second = start_child(
        postgres,
        *("restore", paused.backup_id, "--yes", "--verbosity=2"),
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        MIGRATOR_TEST_SETTINGS='{"RUN_LOCK_TIMEOUT": 120}',
    )
    try:
        wait_for_line_starting(second, "Waiting for the migration lock held by ")
        paused.go.write_text("go\n")
        _, err = paused.child.communicate(timeout=300)
        _, second_err = second.communicate(timeout=300)
    finally:
        second.kill()

    assert paused.child.returncode == 6, err
    assert "was not swapped in, nothing was changed: " in err
    assert second.returncode == 0, second_err
    assert snapshot(postgres) == paused.before
    outcomes = Run.objects.using(postgres).filter(command="restore").order_by("pk")
    assert [run.outcome for run in outcomes] == ["failed", "succeeded"]
    assert databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_whose_safety_backup_fails_drops_its_new_database(
    postgres, settings, tmp_path
):
    backup_id, _, changed = changed_after_a_backup(postgres)
    old_oid = oid(postgres)
    bin_dir = bin_with(tmp_path, "pg_dump", FAILING_PG_DUMP)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(bin_dir)}

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert code == 6
    assert SWAPPING in out  # the new database was being filled meanwhile
    assert "The safety backup failed, so nothing was restored: " in err
    assert "refused by the test" in err
    assert snapshot(postgres) == changed
    assert oid(postgres) == old_oid
    assert Run.objects.using(postgres).get(command="restore").outcome == "failed"
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("how", ["truncated payload", "altered payload"])
def test_a_damaged_payload_is_refused_once_the_new_database_fills(postgres, backup_dir, how):
    backup_id, _, changed = changed_after_a_backup(postgres)
    old_oid = oid(postgres)
    _tamper(backup_dir, backup_id, how)

    out, err, code = run_command("restore", backup_id, "--yes", database=postgres, verbosity=2)

    assert code == 6
    assert f"The payload of backup {backup_id!r} is damaged: " in err
    assert SWAPPING in out  # hashed once the new database was filling, then dropped
    assert snapshot(postgres) == changed
    assert oid(postgres) == old_oid
    assert not Run.objects.using(postgres).filter(command="restore").exists()  # no lock taken
    assert databases("migrator_replaced_") == databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_damaged_payload_is_refused_before_production_asks(postgres, backup_dir, settings):
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    backup_id, _, changed = changed_after_a_backup(postgres)
    _tamper(backup_dir, backup_id, "altered payload")

    out, err, code = run_command("restore", backup_id, database=postgres, stdin=TTYInput("no\n"))

    assert code == 6
    assert err.startswith(f"The payload of backup {backup_id!r} is damaged: ")
    assert "Type " not in out  # nobody was asked
    assert snapshot(postgres) == changed
    assert databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_rollback_last_restore_takes_the_parallel_route(postgres, settings, tmp_path):
    ledger_with_a_restorable_run(postgres, settings, tmp_path)
    old_oid = oid(postgres)

    out, err, code = run_command(
        "rollback", "--last", "--restore", *SCRIPTED, database=postgres, verbosity=2
    )

    assert (code, err) == (0, ""), err
    assert SWAPPING in out
    assert names(postgres) == ["Alice", "BOB"]
    assert oid(postgres) != old_oid
    [rolled_back] = rollback_runs(postgres)
    restored = Run.objects.using(postgres).get(command="restore")
    assert (rolled_back.outcome, restored.outcome) == ("succeeded", "succeeded")
    assert rolled_back.details["restore_run"] == restored.pk
    assert len(databases("migrator_replaced_")) == 1
    assert databases("migrator_restore_") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_two_parallel_last_restores_at_once_restore_once(postgres, settings, tmp_path):
    env = ledger_with_a_restorable_run(postgres, settings, tmp_path)
    argv = ("rollback", "--last", "--restore", *SCRIPTED, "--lock-timeout", "300")
    jobs = {"MIGRATOR_TEST_SETTINGS": '{"RESTORE_JOBS": 2}'}
    children = [start_child(postgres, *argv, **env, **jobs) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]

    assert [child.returncode for child in children] == [0, 0], outputs
    assert names(postgres) == ["Alice", "BOB"]
    restores = Run.objects.using(postgres).filter(command="restore")
    assert [run.outcome for run in restores] == ["succeeded"]
    assert databases("migrator_restore_") == []  # the second's fill, if begun, was dropped


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_last_restore_killed_leaves_old_data_and_the_next_one_sweeps(
    postgres, settings, tmp_path
):
    env = ledger_with_a_restorable_run(postgres, settings, tmp_path)
    bin_dir, paused, _ = pausing_bin(tmp_path)
    jobs = {"RESTORE_JOBS": 2}
    connections[postgres].close()  # a session in the database would keep it from the route
    child = start_child(
        postgres,
        *("rollback", "--last", "--restore", *SCRIPTED),
        **env,
        MIGRATOR_TEST_SETTINGS=json.dumps({**jobs, "PG_BIN_DIR": str(bin_dir)}),
    )
    pid = int(paused.read_text())  # pg_restore --jobs, stopped
    pg_restore = (pid, proc_stat(pid).started)
    [scratch] = databases("migrator_restore_")
    wait_until(lambda: restore_running(postgres), what="the restore's run, opened meanwhile")

    child.kill()
    child.communicate(timeout=60)
    wait_until(lambda: not alive(pg_restore), what="the killed rollback's pg_restore")

    assert names(postgres) == ["alice", "bob"]  # the swap never happened
    assert databases("migrator_restore_") == [scratch]
    connections[postgres].close()
    env["MIGRATOR_TEST_SETTINGS"] = json.dumps(jobs)
    done = run_child(postgres, "rollback", "--last", "--restore", *SCRIPTED, **env)
    assert done.returncode == 0, done.stderr
    assert names(postgres) == ["Alice", "BOB"]
    assert databases("migrator_restore_") == []  # the killed one's new database swept
    assert [run.outcome for run in rollback_runs(postgres)] == ["succeeded", "interrupted"]


def running(watcher, statement: str) -> bool:
    """A client session in the test's database or a restore's new one runs ``statement``."""
    name = connections["postgres"].settings_dict["NAME"]
    with watcher.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND (datname = %s OR starts_with(datname, 'migrator_restore_'))",
            [name],
        )
        return any(query.startswith(statement) for (query,) in cursor.fetchall())
