"""The restore drill, ``backup --verify ID --full``, on both vendors and both formats."""

import json
import tempfile
from pathlib import Path

import pytest
from django.db import connections

from migrator import scratch
from migrator.backup import drill as drilling
from migrator.backup import get_manifest
from migrator.backup.drill import SCRATCH_PREFIX
from migrator.backup.storage import DirectoryStore
from migrator.conf import get_settings
from migrator.models import Run
from project.ledger.models import Entry
from tests import test_backup
from tests.conftest import _admin_execute
from tests.test_backup import FORMATS, _reseal, seed, snapshot, take_backup
from tests.test_backup_encryption import new_identity, paused_in_pg_restore
from tests.utils import raw_connection, run_command

backup_dir = test_backup.backup_dir  # autouse: each test keeps its backups to itself


def scratch_left(alias: str) -> list[str]:
    """Scratch databases (PostgreSQL) or files (SQLite) that exist now."""
    if connections[alias].vendor == "sqlite":
        drills = Path(tempfile.gettempdir()).glob(f"{scratch.PREFIX}drill-*/{SCRATCH_PREFIX}*")
        return sorted(path.name for path in drills)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [SCRATCH_PREFIX]
        )
        return sorted(name for (name,) in cursor.fetchall())


def drill(alias: str, backup_id: str, *args: str) -> tuple[dict, str, int]:
    out, err, code = run_command(
        "backup", "--verify", backup_id, "--full", "--json", *args, database=alias
    )
    return json.loads(out), err, code


@pytest.mark.parametrize("format", FORMATS)
def test_drill_reports_every_table_and_leaves_nothing(db_alias, format):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    before, runs = snapshot(db_alias), Run.objects.using(db_alias).count()

    report, err, code = drill(db_alias, backup_id)

    assert (code, err) == (0, "")
    assert (report["outcome"], report["cause"], report["migrations_match"]) == ("passed", "", True)
    counts = {row["table"].rpartition(".")[2]: row for row in report["tables"]}
    assert counts["ledger_entry"] == {
        "table": counts["ledger_entry"]["table"],
        "recorded": 4,
        "restored": 4,
    }
    assert counts["auth_user_groups"]["restored"] == 1
    assert all(row["recorded"] == row["restored"] for row in report["tables"])
    assert scratch_left(db_alias) == []
    assert snapshot(db_alias) == before
    assert Run.objects.using(db_alias).count() == runs  # the live database was not touched


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("jobs", [None, 2], ids=["restore jobs unset", "restore jobs 2"])
def test_a_drill_restores_into_its_scratch_database_itself(db_alias, settings, jobs):
    """Never by the parallel route's swap, whatever RESTORE_JOBS says: the scratch database
    is empty, and the drill merges no audit into it."""
    settings.MIGRATOR = {**settings.MIGRATOR, "RESTORE_JOBS": jobs}
    seed(db_alias)
    backup_id = take_backup(db_alias)

    out, err, code = run_command(
        "backup", "--verify", backup_id, "--full", database=db_alias, verbosity=2
    )

    assert (code, err) == (0, ""), err
    assert "Restoring" not in out
    assert out.splitlines()[-1].startswith(f"Drill of backup {backup_id} passed: ")
    assert scratch_left(db_alias) == []


def test_drill_prints_the_comparison_and_list_and_status_show_it(db_alias):
    seed(db_alias)
    backup_id = take_backup(db_alias)

    out, err, code = run_command("backup", "--verify", backup_id, "--full", database=db_alias)

    assert (code, err) == (0, "")
    assert [line for line in out.splitlines() if "ledger_account " in line][0].split()[1:] == [
        "2",
        "2",
    ]
    assert out.splitlines()[-1].startswith(f"Drill of backup {backup_id} passed: ")
    listing = run_command("backup", "--list", database=db_alias)[0]
    assert "  -    drilled " in listing
    assert ": passed" in listing
    status = run_command("migrationstatus", database=db_alias)[0]
    assert "not encrypted, drilled " in status
    document = json.loads(run_command("migrationstatus", "--json", database=db_alias)[0])
    assert document["latest_backup"]["last_drill"]["outcome"] == "passed"


def test_drill_of_an_encrypted_backup_needs_the_identity(db_alias, settings, tmp_path):
    public = new_identity(tmp_path / "key.txt")
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [public]}
    seed(db_alias)
    backup_id = take_backup(db_alias)

    _, err, code = run_command("backup", "--verify", backup_id, "--full", database=db_alias)
    assert code == 6
    assert err.startswith(f"Backup {backup_id!r} is encrypted to ")

    report, err, code = drill(db_alias, backup_id, "--identity", str(tmp_path / "key.txt"))
    assert (code, err, report["outcome"], report["encrypted"]) == (0, "", "passed", True)
    assert scratch_left(db_alias) == []
    assert "age  drilled " in run_command("backup", "--list", database=db_alias)[0]


@pytest.mark.parametrize("format", FORMATS)
def test_a_payload_edited_consistently_with_its_checksum_fails_the_drill(
    db_alias, format, backup_dir
):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    Entry.objects.using(db_alias).filter(amount="0.10").delete()
    fewer = take_backup(db_alias, "--format", format)
    _reseal(backup_dir, backup_id, (backup_dir / get_manifest(fewer).payload).read_bytes())

    report, err, code = drill(db_alias, backup_id)

    assert code == 6
    table = next(row["table"] for row in report["tables"] if row["table"].endswith("entry"))
    assert err == (
        f"Drill of backup {backup_id} failed: Table {table!r} has 3 row(s) after the restore; "
        "the backup recorded 4 row(s).\n"
    )
    assert report["outcome"] == "failed"
    assert scratch_left(db_alias) == []
    listing = run_command("backup", "--list", "--json", database=db_alias)[0]
    drilled = {b["id"]: b["last_drill"] for b in json.loads(listing)["backups"]}
    assert (drilled[backup_id]["outcome"], drilled[fewer]) == ("failed", None)


@pytest.mark.parametrize("format", FORMATS)
def test_a_backup_that_does_not_restore_fails_the_drill_naming_the_cause(
    db_alias, format, backup_dir
):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    payload = (backup_dir / get_manifest(backup_id).payload).read_bytes()
    _reseal(backup_dir, backup_id, payload[: len(payload) * 2 // 3])
    before = snapshot(db_alias)

    report, err, code = drill(db_alias, backup_id)

    assert code == 6
    assert err.startswith(f"Drill of backup {backup_id} failed: Restore into '")
    assert report["cause"] in err
    assert scratch_left(db_alias) == []
    assert snapshot(db_alias) == before


def test_a_backup_needing_an_extension_the_server_lacks_fails_the_drill(db_alias, backup_dir):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("extensions are PostgreSQL's")
    seed(db_alias)
    with connections[db_alias].cursor() as cursor:
        cursor.execute("CREATE EXTENSION vector")
    backup_id = take_backup(db_alias)
    path = backup_dir / get_manifest(backup_id).payload
    # The archive's table of contents is plain text: make it create an extension no server has.
    _reseal(backup_dir, backup_id, path.read_bytes().replace(b"vector", b"vectox"))

    report, err, code = drill(db_alias, backup_id)

    assert code == 6
    assert 'extension "vectox" is not available' in err
    assert report["cause"] in err
    assert scratch_left(db_alias) == []


def test_a_killed_drills_leftovers_are_removed_by_the_next_drill(db_alias):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    leftover, live = f"{SCRATCH_PREFIX}leftover", f"{SCRATCH_PREFIX}live"
    holder = None
    if connections[db_alias].vendor == "postgresql":
        for name in (leftover, live):
            _admin_execute(db_alias, f'CREATE DATABASE "{name}"')
        holder = raw_connection(db_alias, dbname=live)
    else:
        killed = Path(tempfile.gettempdir(), f"{scratch.PREFIX}drill-killed")  # owner gone
        killed.mkdir(mode=0o700)
        for name in (scratch.OWNER, f"{leftover}.sqlite3", f"{leftover}.sqlite3-journal"):
            (killed / name).write_bytes(b"")
    try:
        assert drill(db_alias, backup_id)[2] == 0
        remaining = scratch_left(db_alias)
    finally:
        if holder is not None:
            holder.close()
            _admin_execute(db_alias, f'DROP DATABASE IF EXISTS "{live}"')
            _admin_execute(db_alias, f'DROP DATABASE IF EXISTS "{leftover}"')
    assert remaining == ([live] if holder is not None else [])


def test_a_drill_killed_mid_restore_leaves_a_scratch_database_the_next_drill_drops(
    db_alias, backup_dir, tmp_path
):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("a SQLite drill runs no tool to stop it in; see the leftover test")
    seed(db_alias)
    backup_id = take_backup(db_alias)
    with paused_in_pg_restore(
        db_alias, backup_dir, tmp_path, "backup", "--verify", backup_id, "--full"
    ):
        leftovers = scratch_left(db_alias)  # pg_restore started: the scratch database exists
    assert len(leftovers) == 1

    report, err, code = drill(db_alias, backup_id)

    assert (code, err, report["outcome"]) == (0, "", "passed")
    assert scratch_left(db_alias) == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_drill_the_server_refuses_a_scratch_database_fails_saying_so(
    db_alias, new_databases_refused
):
    seed(db_alias)
    backup_id = take_backup(db_alias)

    out, err, code = run_command("backup", "--verify", backup_id, "--full", database=db_alias)

    assert (out, code) == ("", 6), err
    assert err.startswith(
        f"Drill of backup {backup_id} failed: The drill cannot use a scratch database on the "
        f"server of {db_alias!r}: the server does not let this role into a new database ("
    ), err
    assert err.endswith("Let the role connect to databases it creates (pg_hba.conf).\n"), err
    assert len(err.splitlines()) == 1
    assert scratch_left(db_alias) == []


def test_a_drill_of_a_backup_pruned_meanwhile_leaves_no_note(db_alias, monkeypatch):
    """A prune between the drill's read and its note: the note was written beside nothing."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    store = DirectoryStore(get_settings().backup_dir)
    restore_and_compare = drilling._restore_and_compare

    def pruned_meanwhile(*args, **kwargs):
        compared = restore_and_compare(*args, **kwargs)
        store.delete(backup_id, get_manifest(backup_id).payload)
        return compared

    monkeypatch.setattr(drilling, "_restore_and_compare", pruned_meanwhile)
    out, err, code = run_command("backup", "--verify", backup_id, "--full", database=db_alias)
    assert code == 0, err
    assert list(store.directory.glob(f"{backup_id}*")) == []
