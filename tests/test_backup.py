"""Backup and restore through the commands, on SQLite and PostgreSQL, native and portable."""

import dataclasses
import gzip
import hashlib
import json
import signal
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.storage import FileSystemStorage
from django.core.management.color import no_style
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField, AlterField, RunPython
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from migrator import audit
from migrator.backup import get_manifest, list_backups
from migrator.backup.manifest import _seal
from migrator.backup.storage import DirectoryStore
from migrator.models import MigrationHash, Run, RunStep
from project.ledger.models import Account, Entry
from tests.conftest import _admin_execute, drop_test_database
from tests.test_children import wait_until
from tests.utils import (
    TTYInput,
    applied,
    bin_with,
    execute,
    fifos,
    raw_connection,
    repointed,
    run_child,
    run_command,
    start_child,
    start_paused_in_pg_restore,
    sweep_before_locking,
    table_columns,
)

FORMATS = ["native", "portable"]
# What a deploy tool sends and what a person types.
STOPPED_BY = pytest.mark.parametrize(
    ("signum", "how"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")],
    ids=["sigterm", "ctrl-c"],
)


@pytest.fixture(autouse=True)
def backup_dir(settings, tmp_path) -> Path:
    """Every test keeps its backups to itself."""
    directory = tmp_path / "backups"
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(directory)}
    return directory


@pytest.fixture
def production(settings):
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}


@pytest.fixture
def both_databases(django_db_blocker, tmp_path):
    """A fresh SQLite database as 'default' and a fresh PostgreSQL one as 'postgres'."""
    sqlite, postgres = connections["default"], connections["postgres"]
    originals = sqlite.settings_dict["NAME"], postgres.settings_dict["NAME"]
    name = f"migrator_{uuid.uuid4().hex[:12]}"
    with django_db_blocker.unblock():
        connections.close_all()
        _admin_execute("postgres", f'CREATE DATABASE "{name}"')
        sqlite.settings_dict["NAME"] = str(tmp_path / "db.sqlite3")
        postgres.settings_dict["NAME"] = name
        try:
            yield "default", "postgres"
        finally:
            connections.close_all()
            sqlite.settings_dict["NAME"], postgres.settings_dict["NAME"] = originals
            drop_test_database("postgres", name)


def seed(alias: str) -> None:
    """Migrate the demo project and put rows in plain, FK and many-to-many tables."""
    assert run_command("safemigrate", "--yes", "--no-backup", database=alias)[2] == 0
    alice = Account.objects.using(alias).create(name="alice")
    bob = Account.objects.using(alias).create(name="bob")
    for amount in ("1.50", "-2.25", "1000000.01"):
        Entry.objects.using(alias).create(account=alice, amount=amount, email="a@example.com")
    Entry.objects.using(alias).create(account=bob, amount="0.10")
    user = User.objects.db_manager(alias).create_user("carol", "c@example.com", "pw")
    user.groups.add(Group.objects.using(alias).create(name="ops"))


def snapshot(alias: str) -> dict[str, list[tuple]]:
    """Every row of the tables that seed() fills, and of django_migrations, as Django reads them."""
    querysets = {
        "account": Account.objects.values_list("id", "name"),
        "entry": Entry.objects.values_list("id", "account_id", "amount", "email", "created"),
        "user": User.objects.values_list("id", "username", "password", "email", "date_joined"),
        "group": Group.objects.values_list("id", "name"),
        "user_groups": User.groups.through.objects.values_list("id", "user_id", "group_id"),
        "migrations": MigrationRecorder(connections[alias]).migration_qs.values_list(
            "id", "app", "name", "applied"
        ),
    }
    return {name: list(rows.using(alias).order_by("id")) for name, rows in querysets.items()}


def change_everything(alias: str) -> None:
    Account.objects.using(alias).filter(name="alice").update(name="mallory")
    Entry.objects.using(alias).filter(amount="0.10").delete()
    Account.objects.using(alias).create(name="eve")
    User.objects.using(alias).get(username="carol").groups.clear()


def take_backup(alias: str, *args: str) -> str:
    out, err, code = run_command("backup", "--json", *args, database=alias)
    assert (code, err) == (0, ""), err
    return json.loads(out)["id"]


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_a_sqlite_restore_without_room_says_where_and_changes_nothing(db_alias):
    """SQLite says only "database or disk is full"; max_page_count stands for the disk."""
    seed(db_alias)
    account = Account.objects.using(db_alias).get(name="alice")
    Entry.objects.using(db_alias).bulk_create(
        Entry(account=account, amount="1.00", email="x" * 200) for _ in range(3000)
    )
    backup_id = take_backup(db_alias)
    Entry.objects.using(db_alias).filter(email="x" * 200).delete()
    execute(db_alias, "VACUUM")
    before = snapshot(db_alias)
    [(pages,)] = execute(db_alias, "PRAGMA page_count")
    execute(db_alias, f"PRAGMA max_page_count = {pages}")  # this connection's limit
    try:
        out, err, code = run_command("restore", backup_id, "--no-safety-backup", database=db_alias)
    finally:
        execute(db_alias, "PRAGMA max_page_count = 1073741823")

    assert code == 6
    name = connections[db_alias].settings_dict["NAME"]
    assert err == (
        f"Restore into 'default' failed; nothing was changed: no room left for {name!r} (its "
        "disk is full, or the database at its size limit); free space there and run it "
        "again.\n"
    )
    assert snapshot(db_alias) == before


@pytest.mark.parametrize("format", FORMATS)
def test_restore_brings_the_rows_back_exactly(db_alias, format):
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    change_everything(db_alias)
    assert snapshot(db_alias) != before

    out, err, code = run_command("restore", backup_id, database=db_alias)

    assert (code, err) == (0, "")
    assert f"Restored backup {backup_id} into {db_alias!r}" in out
    assert snapshot(db_alias) == before
    restore_run = Run.objects.using(db_alias).get(command="restore")
    assert restore_run.outcome == Run.Outcome.SUCCEEDED
    assert restore_run.details["restored_backup"] == backup_id
    safety = get_manifest(restore_run.backup_id)
    assert (safety.reason, safety.run_id, safety.format) == ("pre-restore", restore_run.pk, format)
    assert Account.objects.using(db_alias).create(name="new").pk == 3  # sequences follow


def test_portable_backup_from_sqlite_restores_into_postgresql(both_databases):
    sqlite, postgres = both_databases
    seed(sqlite)
    before = snapshot(sqlite)
    backup_id = take_backup(sqlite, "--format", "portable")
    _, err, code = run_command("restore", backup_id, database=postgres)
    assert code == 6  # another database's backup
    assert f"Pass --force to replace {postgres!r} with it anyway; nothing was changed." in err
    assert not connections[postgres].introspection.table_names()

    out, err, code = run_command("restore", backup_id, "--force", database=postgres)

    assert (code, err) == (0, ""), err
    assert f"Forced: backup {backup_id!r} is of SQLite file " in out
    assert snapshot(postgres) == before
    assert Entry.objects.using(postgres).create(account_id=1, amount="1").pk == 5
    assert run_command("safemigrate", database=postgres)[0] == "No migrations to apply.\n"


def test_native_backup_of_another_vendor_is_refused(both_databases):
    sqlite, postgres = both_databases
    seed(sqlite)
    backup_id = take_backup(sqlite)
    _, err, code = run_command("restore", backup_id, database=postgres)
    assert code == 6
    assert "is a native sqlite backup; it cannot be restored into the postgresql" in err
    assert "--format portable" in err
    assert not connections[postgres].introspection.table_names()


def test_runs_after_the_backup_survive_the_restore(db_alias, scenario):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    scenario("basic")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    later = Run.objects.using(db_alias).get(command="safemigrate", arguments__app_label="scenarios")
    later_steps = list(later.steps.values_list("name", flat=True))

    out, err, code = run_command("restore", backup_id, database=db_alias)

    assert (code, err) == (0, "")
    kept = Run.objects.using(db_alias).get(pk=later.pk)
    assert (kept.command, kept.outcome, kept.started_at) == (
        later.command,
        later.outcome,
        later.started_at,
    )
    assert list(kept.steps.values_list("name", flat=True)) == later_steps
    assert Run.objects.using(db_alias).filter(command="restore", outcome="succeeded").count() == 1
    # The schema is the backup's: the scenario's table went, and its hashes with it.
    assert "scenarios_widget" not in connections[db_alias].introspection.table_names()
    assert applied(db_alias, "scenarios") == []
    with connections[db_alias].cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        recorded = set(cursor.fetchall())
    assert set(MigrationHash.objects.using(db_alias).values_list("app_label", "name")) == recorded
    # ... and the next run applies them again.
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios")[-1] == "0004_widget_weight"


@pytest.mark.parametrize("format", FORMATS)
def test_audit_of_a_run_recorded_after_a_backup_is_merged_back(db_alias, format):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    connection = connections[db_alias]
    first = Run.objects.using(db_alias).get()
    first.outcome = "interrupted"  # changed after the backup: the live row wins
    first.save()
    with audit.recorded(connection, command="rollback", arguments={"last": True}) as later:
        RunStep.objects.using(db_alias).create(
            run=later, app_label="ledger", name="0005", direction="unapply"
        )

    assert run_command("restore", backup_id, database=db_alias)[2] == 0

    runs = Run.objects.using(db_alias).order_by("id")
    assert [(r.pk, r.command, r.outcome) for r in runs] == [
        (first.pk, "safemigrate", "interrupted"),
        (later.pk, "rollback", "succeeded"),
        (later.pk + 1, "restore", "succeeded"),
    ]
    assert list(runs[1].steps.values_list("name", "direction")) == [("0005", "unapply")]
    assert runs[0].steps.count() == first.steps.count()


def _tamper(backup_dir: Path, backup_id: str, how: str) -> None:
    manifest = json.loads((backup_dir / f"{backup_id}.json").read_text())
    payload = backup_dir / manifest["payload"]
    if how == "truncated payload":
        payload.write_bytes(payload.read_bytes()[: manifest["size"] // 2])
    elif how == "altered payload":
        data = bytearray(payload.read_bytes())
        data[len(data) // 2] ^= 0xFF
        payload.write_bytes(bytes(data))
    else:  # an edited manifest: claim another migration state
        manifest["migrations"] = manifest["migrations"][:-1]
        (backup_dir / f"{backup_id}.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["truncated payload", "altered payload", "altered manifest"])
def test_damaged_backups_fail_verify_and_restore_with_6(db_alias, backup_dir, how):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    assert run_command("backup", "--verify", backup_id, database=db_alias) == (
        f"Backup {backup_id} is intact ({get_manifest(backup_id).size / 1024:.1f} KB, "
        f"sha256 {get_manifest(backup_id).sha256[:16]}...).\n",
        "",
        0,
    )
    _tamper(backup_dir, backup_id, how)
    expected = {
        "truncated payload": "is damaged: ",
        "altered payload": "is damaged: its SHA-256 does not match the manifest",
        "altered manifest": "was altered (its checksum does not match)",
    }[how]

    _, err, code = run_command("backup", "--verify", backup_id, database=db_alias)
    assert code == 6
    assert expected in err
    _, err, code = run_command("restore", backup_id, database=db_alias)
    assert code == 6
    assert expected in err

    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()
    assert [m.id for m in list_backups()] == ([] if how == "altered manifest" else [backup_id])


def test_prune_never_keeps_a_damaged_backup(db_alias, backup_dir):
    seed(db_alias)
    intact = take_backup(db_alias)
    newest = take_backup(db_alias)  # of the same migration state
    _tamper(backup_dir, newest, "truncated payload")

    out, err, code = run_command("backup", "--prune", "--keep", "0", "--yes", database=db_alias)

    assert (code, err) == (0, "")
    assert out == (
        f"Deleted {newest}\n"
        f"Damaged {newest}: failed verification, so not kept\n"
        f"Kept {intact}: the only backup of the current migration state\n"
        "Pruned 1 backup(s); 1 kept.\n"
    )
    assert run_command("backup", "--verify", intact, database=db_alias)[2] == 0
    # A damaged backup does not count towards --keep either.
    newest = take_backup(db_alias)
    _tamper(backup_dir, newest, "altered payload")
    out, _, code = run_command("backup", "--prune", "--keep", "1", "--json", database=db_alias)
    assert json.loads(out) == {
        "deleted": [newest],
        "kept": [intact],
        "protected": [],
        "damaged": [newest],
        "orphans": [],
    }


@pytest.mark.parametrize("command", [("restore",), ("backup", "--verify"), ("backup", "--show")])
def test_unknown_backup_id_exits_6_and_names_the_list_command(db_alias, backup_dir, command):
    _, err, code = run_command(*command, "nope-123", database=db_alias)
    assert code == 6
    assert err == (
        f"No backup 'nope-123' in {str(backup_dir)!r}; run 'manage.py backup --list' to see "
        "the backups.\n"
    )
    _, err, code = run_command(*command, "../etc/passwd", database=db_alias)
    assert (code, err) == (
        6,
        "'../etc/passwd' is not a backup id; run 'manage.py backup --list' to see the backups.\n",
    )


def test_server_down_exits_6_with_one_clear_line(db_alias, tmp_path):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    postgresql = connections[db_alias].vendor == "postgresql"
    elsewhere = (  # no server listens on that socket; no such file
        {"PORT": "1"} if postgresql else {"NAME": str(tmp_path / "gone" / "db.sqlite3")}
    )
    with repointed(db_alias, **elsewhere):
        for command in (
            ("backup",),
            ("backup", "--format", "portable"),
            ("restore", backup_id, "--force"),
        ):
            out, err, code = run_command(*command, "--skip-checks", database=db_alias)
            assert (out, code) == ("", 6)
            assert len(err.splitlines()) == 1
            if postgresql:
                assert err.startswith(f"Cannot connect to database {db_alias!r}: ")
                assert "connection to server" in err  # psycopg 3 puts 'connection is bad: ' first
                assert err.endswith(
                    "Check that the server is running and reachable; nothing was changed.\n"
                )
            else:
                assert "does not exist" in err or "unable to open database file" in err


@pytest.mark.parametrize("label", ["fix\n\nlong commit message", "tab\there", "cr\r"])
def test_a_label_that_is_not_one_line_is_refused_before_anything_is_written(
    db_alias, backup_dir, label
):
    """``--label "$(git log -1 --format=%B)"`` would break ``backup --list``'s one line each."""
    seed(db_alias)
    out, err, code = run_command("backup", "--label", label, database=db_alias)
    assert (out, code) == ("", 1)
    assert err == (
        f"The label {label!r} is not one line of printable text; give a short note, "
        "such as the release it precedes.\n"
    )
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []


def test_a_secret_typed_into_a_label_is_masked_in_the_manifest(db_alias, backup_dir):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--label", "moved from postgres://app:S3cr3t@old/db")

    assert get_manifest(backup_id).label == "moved from postgres://***@old/db"
    written = b"".join(path.read_bytes() for path in backup_dir.rglob("*.json"))
    assert b"S3cr3t" not in written


def test_files_are_private_and_the_manifest_describes_the_backup(db_alias, backup_dir):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--label", "before the big one")
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700
    files = sorted(path.name for path in backup_dir.iterdir())
    manifest = get_manifest(backup_id)
    assert files == sorted([f"{backup_id}.json", manifest.payload])
    assert {stat.S_IMODE(path.stat().st_mode) for path in backup_dir.iterdir()} == {0o600}
    vendor = connections[db_alias].vendor
    assert (manifest.database, manifest.vendor, manifest.format, manifest.reason) == (
        db_alias,
        vendor,
        "native",
        "manual",
    )
    assert manifest.label == "before the big one"
    assert manifest.tool.startswith(
        "pg_dump (PostgreSQL) 16" if vendor == "postgresql" else "SQLite"
    )
    assert manifest.size == (backup_dir / manifest.payload).stat().st_size
    assert ["ledger", "0005_normalise_account_names"] in [m[:2] for m in manifest.migrations]
    assert all(m[2].startswith("sha256:1:") for m in manifest.migrations)
    out, err, code = run_command("backup", "--list", "--json", database=db_alias)
    assert json.loads(out)["backups"] == [{**manifest.as_dict(), "last_drill": None}]
    out, _, _ = run_command("backup", "--show", backup_id, database=db_alias)
    assert f"id:               {backup_id}\n" in out
    assert f"migrations:       {len(manifest.migrations)} applied\n" in out
    out, _, _ = run_command("backup", "--verbosity", "0", database=db_alias)
    assert out.strip() in {m.id for m in list_backups()}


HOLD_A_PARTIAL = """
import fcntl, sys
with open(sys.argv[1], "wb") as handle:
    handle.write(b"half a dump")
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("HOLDING", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def holding(partial: Path) -> Iterator[Callable[[], None]]:
    """A writer holding ``partial`` as a backup in progress does; yields its kill -9."""
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_PARTIAL, str(partial)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def kill() -> None:
        writer.kill()
        writer.wait(timeout=60)

    try:
        assert writer.stdout.readline() == "HOLDING\n"
        yield kill
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=60)
        writer.stdin.close()
        writer.stdout.close()


def test_a_killed_backups_partial_file_is_removed_by_the_next_backup(db_alias, backup_dir):
    """A backup writes its payload as a hidden .partial file it holds an OS lock on."""
    seed(db_alias)
    backup_dir.mkdir(mode=0o700)
    partial = backup_dir / ".20261123T000000-killed.sqlite3.partial"
    with holding(partial) as kill:
        take_backup(db_alias)
        assert partial.exists()  # its writer is alive: another backup in progress
        kill()  # kill -9: the kernel drops the lock with the process
        backup_id = take_backup(db_alias)
        assert not partial.exists()
    assert run_command("backup", "--verify", backup_id, database=db_alias)[1:] == ("", 0)
    assert not [path for path in backup_dir.iterdir() if path.name.startswith(".")]


def test_a_backup_killed_between_its_renames_is_removed_by_the_next_backup(db_alias, backup_dir):
    """Killed after the payload's rename and before the manifest's: the payload would lie
    there unlisted for ever. The manifest's .partial file, held until the kill, says so."""
    seed(db_alias)
    backup_dir.mkdir(mode=0o700)
    killed = "default-20261204T000000Z-c0ffee"
    partial = backup_dir / f".{killed}.json.partial"
    payload = backup_dir / f"{killed}.jsonl.gz"
    payload.write_bytes(b"a whole payload")
    with holding(partial) as kill:
        take_backup(db_alias)
        assert partial.exists()  # its writer is alive: a backup being published
        assert payload.exists()
        kill()
        backup_id = take_backup(db_alias)
    assert not [path for path in backup_dir.iterdir() if killed in path.name]
    assert run_command("backup", "--verify", backup_id, database=db_alias)[1:] == ("", 0)


FILE_SIZE_LIMIT = """
import os, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # a disk that fills up at limit
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.parametrize("fails", ["payload", "portable payload", "manifest"])
def test_a_backup_that_runs_out_of_disk_leaves_nothing_behind(db_alias, backup_dir, fails):
    """No payload without its manifest, no .partial file, no SQLite journal: the backup
    directory as it was, and one line. Each file may grow to a limit (as on a disk that
    fills up): below the payload's size, or between it and the manifest's (a long label).
    A portable payload fills it while its rows are still being read."""
    seed(db_alias)
    if fails == "portable payload":  # rows enough for gzip to write as they are read
        account = Account.objects.using(db_alias).get(name="alice")
        Entry.objects.using(db_alias).bulk_create(
            Entry(account=account, amount=str(n), email=f"{n}@example.com") for n in range(20000)
        )
    kept = take_backup(db_alias, "--format", "portable")
    before = sorted(backup_dir.iterdir())
    size = (backup_dir / get_manifest(kept).payload).stat().st_size
    if fails == "payload":
        limit, args = 1024, ["--format", "native"]
    elif fails == "portable payload":
        limit, args = 16384, ["--format", "portable"]
    else:
        limit, args = size + 4096, ["--format", "portable", "--label", "x" * (size + 8192)]
    done = run_child(
        db_alias,
        "backup",
        *args,
        prefix=[sys.executable, "-c", FILE_SIZE_LIMIT, str(limit)],
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
    )
    assert done.returncode == 6, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    if fails != "payload" or connections[db_alias].vendor == "sqlite":
        assert "File too large" in done.stderr or "disk I/O error" in done.stderr
    else:  # pg_dump gets SIGXFSZ, where a full disk gives it an error to print
        assert done.stderr.endswith("pg_dump was killed by SIGXFSZ.\n")
    assert sorted(backup_dir.iterdir()) == before
    assert [m.id for m in list_backups()] == [kept]


def test_a_backup_whose_new_file_another_backups_sweep_finds_unlocked_succeeds(
    db_alias, backup_dir, monkeypatch
):
    """Two backups at once: one sweeps leftovers as the other has created, not yet locked,
    its .partial file. The sweep removes it; the backup creates it again, not exit 6."""
    seed(db_alias)

    def another_backup_starts() -> None:
        with DirectoryStore(backup_dir).staging("another.sqlite3"):
            pass

    swept = sweep_before_locking(
        monkeypatch, lambda path: path.name.endswith(".partial"), another_backup_starts
    )
    backup_id = take_backup(db_alias)
    assert len(swept) == 1
    assert run_command("backup", "--verify", backup_id, database=db_alias)[1:] == ("", 0)
    assert not [path for path in backup_dir.iterdir() if path.name.startswith(".")]


def test_production_guard_applies_to_restore(db_alias, production):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    name = Path(connections[db_alias].settings_dict["NAME"]).name
    question = f"Replace everything in {db_alias!r} (production) with backup {backup_id!r}"

    _, err, code = run_command("restore", backup_id, "--noinput", database=db_alias)
    assert code == 3
    assert err.startswith(question)
    assert err.endswith("No terminal to ask on; pass --yes to confirm.\n")
    out, err, code = run_command("restore", backup_id, database=db_alias, stdin=TTYInput("no\n"))
    assert (code, err) == (3, "Cancelled; nothing was changed.\n")
    assert f"Type {name!r} to continue: " in out
    assert snapshot(db_alias) == changed

    out, err, code = run_command(
        "restore", backup_id, "--json", database=db_alias, stdin=TTYInput(f"{name}\n")
    )
    assert code == 0
    assert err.startswith(question)  # with --json, the question is asked on stderr
    assert err.endswith(f"Type {name!r} to continue: ")
    assert json.loads(out)["outcome"] == "succeeded"  # stdout: the document alone
    assert snapshot(db_alias) != changed


def test_prune_deletes_payloads_whose_manifest_is_gone_and_nothing_else(db_alias, backup_dir):
    seed(db_alias)
    kept, orphaned, publishing = (take_backup(db_alias) for _ in range(3))
    (backup_dir / f"{orphaned}.json").unlink()  # by hand, or a prune killed half-way
    (backup_dir / f"{orphaned}.drill").write_bytes(b"{}")
    (backup_dir / f"{publishing}.json").rename(backup_dir / f".{publishing}.json.partial")
    (backup_dir / "README.txt").write_text("not a backup")
    orphans = sorted(p.name for p in backup_dir.glob(f"{orphaned}.*"))
    assert len(orphans) == 2

    out, err, code = run_command("backup", "--prune", "--json", "--yes", database=db_alias)

    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "deleted": [],
        "kept": [kept],
        "protected": [],
        "damaged": [],
        "orphans": orphans,
    }
    assert not list(backup_dir.glob(f"{orphaned}.*"))
    assert (backup_dir / "README.txt").exists()
    assert list(backup_dir.glob(f"{publishing}.*"))  # its manifest is being written
    assert run_command("backup", "--verify", kept, database=db_alias)[2] == 0


def test_prune_keeps_the_newest_and_the_only_backup_of_the_current_state(db_alias, scenario):
    seed(db_alias)
    at_start = take_backup(db_alias)
    scenario("basic")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    newer = [take_backup(db_alias), take_backup(db_alias)]
    assert run_command("restore", at_start, "--no-safety-backup", database=db_alias)[2] == 0

    out, err, code = run_command("backup", "--prune", "--keep", "1", "--json", database=db_alias)

    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "deleted": [newer[0]],
        "kept": [newer[1], at_start],
        "protected": [at_start],
        "damaged": [],
        "orphans": [],
    }
    assert [m.id for m in list_backups()] == [newer[1], at_start]
    out, _, code = run_command("backup", "--prune", "--keep", "0", database=db_alias)
    assert (out, code) == (
        f"Deleted {newer[1]}\nKept {at_start}: the only backup of the current migration state\n"
        "Pruned 1 backup(s); 1 kept.\n",
        0,
    )
    assert run_command("backup", "--prune", "--keep", "-1", database=db_alias)[1:] == (
        "--keep must be 0 or more.\n",
        1,
    )


def test_prune_without_keep_keeps_backup_keep_backups(db_alias, settings):
    seed(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_KEEP": 2}
    oldest, *newer = [take_backup(db_alias) for _ in range(3)]
    out, err, code = run_command("backup", "--prune", "--json", database=db_alias)
    assert (code, err) == (0, "")
    assert json.loads(out)["deleted"] == [oldest]
    assert sorted(m.id for m in list_backups()) == sorted(newer)


def test_pruning_in_production_needs_a_yes(db_alias, production):
    seed(db_alias)
    take_backup(db_alias)
    second = take_backup(db_alias)
    _, err, code = run_command("backup", "--prune", "--keep", "1", "--noinput", database=db_alias)
    assert code == 3
    assert err.startswith(f"Delete 1 backup(s) of {db_alias!r} in production?")
    assert len(list_backups()) == 2
    assert run_command("backup", "--prune", "--keep", "1", "--yes", database=db_alias)[2] == 0
    assert [m.id for m in list_backups()] == [second]


def test_safemigrate_backs_up_first_when_asked_and_names_the_backup(db_alias):
    out, err, code = run_command("safemigrate", "--backup", "--json", database=db_alias)
    assert code == 0
    report = json.loads(out)
    run = Run.objects.using(db_alias).get(pk=report["run_id"])
    assert report["backup_id"] == run.backup_id != ""
    manifest = get_manifest(run.backup_id)
    assert (manifest.reason, manifest.run_id) == ("pre-migrate", run.pk)
    # Taken before anything but migrator's own tables was applied.
    assert {app for app, _, _ in manifest.migrations} == {"migrator"}
    assert f"Backup {run.backup_id} taken" in err


def test_safemigrate_backs_up_by_default_in_production_only(db_alias, settings, production):
    assert run_command("safemigrate", "ledger", "0002", "--yes", database=db_alias)[2] == 0
    assert [m.reason for m in list_backups()] == ["pre-migrate"]
    assert (
        run_command("safemigrate", "ledger", "0003", "--yes", "--no-backup", database=db_alias)[2]
        == 0
    )
    assert len(list_backups()) == 1
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "staging"}
    assert run_command("safemigrate", database=db_alias)[2] == 0
    assert len(list_backups()) == 1
    assert Run.objects.using(db_alias).exclude(backup_id="").count() == 1


def test_a_failed_backup_stops_safemigrate_before_anything_is_applied(db_alias, settings, tmp_path):
    (tmp_path / "a-file").write_text("")
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(tmp_path / "a-file" / "backups")}
    assert run_command("safemigrate", "migrator", "--no-backup", database=db_alias)[2] == 0

    out, err, code = run_command("safemigrate", "--backup", database=db_alias)

    assert code == 6
    assert err.startswith("Nothing was changed: the backup failed. Cannot use the backup directory")
    unmade = tmp_path / "a-file" / "backups"
    assert err.endswith(
        f"Not a directory: '{unmade}'; point MIGRATOR['BACKUP_DIR'] at a directory this user "
        "may create and write.\n"
    )
    assert applied(db_alias, "ledger") == []
    run = Run.objects.using(db_alias).get(arguments__backup=True)
    assert (run.outcome, run.backup_id, run.steps.count()) == ("failed", "", 0)
    assert "Cannot use the backup directory" in run.error


def test_backups_through_a_django_storage(db_alias, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "bucket")},
        },
    }
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    stored = sorted(p.name for p in (tmp_path / "bucket" / "migrator-backups").iterdir())
    assert stored == sorted([f"{backup_id}.json", get_manifest(backup_id).payload])
    assert run_command("backup", "--verify", backup_id, database=db_alias)[2] == 0
    change_everything(db_alias)
    assert run_command("restore", backup_id, database=db_alias)[2] == 0
    assert snapshot(db_alias) == before
    assert len(list_backups()) == 2  # and the safety backup


class ManifestRefusingStorage(FileSystemStorage):
    """A storage that takes payloads and refuses manifests (a quota, a bucket policy)."""

    def _save(self, name, content):
        if name.endswith(".json"):
            raise PermissionError("manifests refused by the test")
        return super()._save(name, content)


def test_a_manifest_that_a_django_storage_refuses_takes_its_payload_with_it(
    db_alias, settings, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": f"{__name__}.ManifestRefusingStorage",
            "OPTIONS": {"location": str(tmp_path / "bucket")},
        },
    }
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
    seed(db_alias)

    _, err, code = run_command("backup", database=db_alias)

    assert code == 6
    assert "manifests refused by the test" in err
    assert list((tmp_path / "bucket" / "migrator-backups").iterdir()) == []  # payload deleted
    assert list_backups() == []


def test_a_backup_that_does_not_fit_the_files_on_disk_needs_force(db_alias, scenario):
    scenario("basic")
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    scenario("empty")  # the scenario's migration files are gone from disk

    _, err, code = run_command("restore", backup_id, database=db_alias)
    assert code == 6
    assert err == (
        f"Backup {backup_id!r} does not fit the migration files on disk: scenarios.0001_initial "
        "is not on disk (and 3 more). Check out the code it was taken with, or pass --force.\n"
    )
    _, err, code = run_command("restore", backup_id, "--force", database=db_alias)
    assert (code, err) == (  # the rows of the scenario's models: no model to load them
        6,
        "The backup holds rows of 'scenarios.widget', which the migration files on disk do "
        "not make; check out the code it was taken with.\n",
    )

    backup_id = take_backup(db_alias)  # native: the tables as they are, whatever the files
    out, err, code = run_command("restore", backup_id, "--force", database=db_alias)
    assert (code, err) == (0, "")
    assert out.startswith("Forced: scenarios.0001_initial is not on disk\n")
    restore = Run.objects.using(db_alias).filter(command="restore").latest("pk")
    assert restore.details["forced"] is True


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_pg_dump_older_than_the_server_is_refused_with_both_versions(db_alias, settings, tmp_path):
    seed(db_alias)
    system = Path("/usr/bin/pg_dump")
    if not system.exists():
        pytest.skip("no system pg_dump to compare with")
    import subprocess

    version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
    major = int(version.split(")")[1].split(".")[0])
    server = connections[db_alias].pg_version // 10000
    if major >= server:
        pytest.skip("the system pg_dump is not older than the server")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": "/usr/bin"}
    _, err, code = run_command("backup", database=db_alias)
    assert (code, err) == (
        6,
        f"pg_dump {major} (/usr/bin/pg_dump) is older than the PostgreSQL {server} server of "
        f"{db_alias!r}; set MIGRATOR['PG_BIN_DIR'] to PostgreSQL {server} client tools, or use "
        "--format portable.\n",
    )
    assert run_command("backup", "--format", "portable", database=db_alias)[2] == 0

    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(tmp_path)}
    _, err, code = run_command("backup", database=db_alias)
    assert (code, err) == (
        6,
        f"pg_dump was not found in PG_BIN_DIR {str(tmp_path)!r}; install the PostgreSQL client "
        "tools, set MIGRATOR['PG_BIN_DIR'], or use --format portable.\n",
    )
    assert [m.format for m in list_backups()] == ["portable"]


def _reseal(backup_dir: Path, backup_id: str, payload: bytes) -> None:
    """Replace a payload and re-seal its manifest, as if the backup had been taken so."""
    manifest = get_manifest(backup_id)
    (backup_dir / manifest.payload).write_bytes(payload)
    sealed = dataclasses.replace(
        manifest, size=len(payload), sha256=hashlib.sha256(payload).hexdigest()
    )
    (backup_dir / f"{backup_id}.json").write_bytes(sealed.to_json())


def _assert_failed_restore_changed_nothing(alias: str, backup_id: str, changed, expected: str):
    _, err, code = run_command("restore", backup_id, database=alias)
    assert code == 6
    assert err.startswith(f"Restore into {alias!r} failed")
    assert expected in err
    assert snapshot(alias) == changed
    run = Run.objects.using(alias).get(command="restore")
    assert run.outcome == "failed"
    assert expected in run.error
    assert get_manifest(run.backup_id).reason == "pre-restore"


def test_a_portable_restore_failing_at_its_last_row_changes_nothing(db_alias, backup_dir):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    change_everything(db_alias)
    changed = snapshot(db_alias)
    lines = gzip.decompress((backup_dir / get_manifest(backup_id).payload).read_bytes())
    lines = lines.decode().splitlines(keepends=True)
    last_object = max(i for i, line in enumerate(lines) if line.startswith('{"model"'))
    clash = {"model": "ledger.account", "pk": 99, "fields": {"name": "bob"}}  # name is unique
    lines.insert(last_object + 1, json.dumps(clash) + "\n")
    trailer = json.loads(lines[-1])
    trailer["end"]["objects"] += 1
    lines[-1] = json.dumps(trailer) + "\n"
    _reseal(backup_dir, backup_id, gzip.compress("".join(lines).encode()))

    _assert_failed_restore_changed_nothing(db_alias, backup_id, changed, "IntegrityError")


def add_large_objects(alias: str) -> None:
    """A table referencing large objects (PostgreSQL): pg_restore's script wraps their data
    in its own BEGIN; ... COMMIT;."""
    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TABLE document (id integer PRIMARY KEY, body oid NOT NULL)")
        cursor.execute(
            "INSERT INTO document SELECT n, lo_from_bytea(0, decode(repeat(md5(n::text), "
            "n * 1000), 'hex')) FROM generate_series(1, 3) n"
        )


def change_large_objects(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT lo_put(body, 0, 'CHANGED') FROM document WHERE id = 1")
        cursor.execute("SELECT lo_unlink(body) FROM document WHERE id = 2")
        cursor.execute("DELETE FROM document WHERE id = 2")
        cursor.execute("INSERT INTO document VALUES (4, lo_from_bytea(0, 'made after'))")


def large_objects(alias: str) -> dict[str, list[tuple]]:
    """Every large object with the MD5 of its contents, and the rows of the document
    table when there is one."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid")
        found = {"large objects": cursor.fetchall()}
        if "document" in connections[alias].introspection.table_names(cursor):
            cursor.execute("SELECT id, body, md5(lo_get(body)) FROM document ORDER BY id")
            found["document"] = cursor.fetchall()
        return found


def large_objects_changed_after_a_backup(alias: str) -> tuple[str, tuple[dict, dict]]:
    """The backup's id, and its rows and large objects, which have changed since."""
    seed(alias)
    add_large_objects(alias)
    before = snapshot(alias), large_objects(alias)
    backup_id = take_backup(alias)
    change_everything(alias)
    change_large_objects(alias)
    return backup_id, before


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_postgresql_restore_brings_large_objects_back(db_alias):
    backup_id, before = large_objects_changed_after_a_backup(db_alias)

    _, err, code = run_command("restore", backup_id, database=db_alias)

    assert (code, err) == (0, "")
    assert (snapshot(db_alias), large_objects(db_alias)) == before  # "made after" went too
    assert Run.objects.using(db_alias).get(command="restore").outcome == "succeeded"


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_large_objects_made_after_a_backup_without_any_go_with_its_restore(db_alias):
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    assert get_manifest(backup_id).large_objects == 0  # restored through the direct pipe
    add_large_objects(db_alias)

    _, err, code = run_command("restore", backup_id, database=db_alias)

    assert (code, err) == (0, "")
    assert (snapshot(db_alias), large_objects(db_alias)) == (before, {"large objects": []})


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("objects", [False, True], ids=["", "large objects"])
def test_a_native_postgresql_restore_failing_half_way_changes_nothing(db_alias, objects):
    """With large objects the GRANT that fails comes after pg_restore's own COMMIT of
    them, which must not end the restore's transaction."""
    seed(db_alias)
    if objects:
        add_large_objects(db_alias)
    role = f"migrator_gone_{uuid.uuid4().hex[:8]}"
    with connections[db_alias].cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}"')
        cursor.execute(f'GRANT SELECT ON ledger_account TO "{role}"')
    backup_id = take_backup(db_alias)
    with connections[db_alias].cursor() as cursor:  # pg_restore's GRANT, near the end, fails
        cursor.execute(f'REVOKE ALL ON ledger_account FROM "{role}"')
        cursor.execute(f'DROP ROLE "{role}"')
    scenario_table = "CREATE TABLE made_after_the_backup (id int)"
    with connections[db_alias].cursor() as cursor:
        cursor.execute(scenario_table)
    change_everything(db_alias)
    if objects:
        change_large_objects(db_alias)
    changed = large_objects(db_alias)

    _assert_failed_restore_changed_nothing(
        db_alias, backup_id, snapshot(db_alias), f'role "{role}" does not exist'
    )
    assert "made_after_the_backup" in connections[db_alias].introspection.table_names()
    assert large_objects(db_alias) == changed


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_postgresql_restore_whose_pg_restore_stops_early_changes_nothing(
    db_alias, backup_dir
):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    payload = (backup_dir / get_manifest(backup_id).payload).read_bytes()
    _reseal(backup_dir, backup_id, payload[: len(payload) * 3 // 4])  # sealed, yet cut short

    _assert_failed_restore_changed_nothing(db_alias, backup_id, changed, "pg_restore: error:")


# A tool that is killed by SIGKILL as soon as it starts (its --version answered).
KILLED_TOOL = """#!/bin/sh
if [ "$1" = "--version" ]; then exec {real}/{name} --version; fi
kill -9 $$
"""


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("objects", [False, True], ids=["", "large objects"])
@pytest.mark.parametrize("tool", ["psql", "pg_restore"])
def test_a_native_postgresql_restore_whose_tool_is_killed_names_it_and_the_signal(
    db_alias, settings, tmp_path, tool, objects
):
    """Killed psql and killed pg_restore each named, and how they ended (they leave no
    error line); the direct pipe and the relay (large objects) alike."""
    seed(db_alias)
    if objects:
        add_large_objects(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    bin_dir = bin_with(tmp_path, tool, KILLED_TOOL, name=tool)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(bin_dir)}

    _assert_failed_restore_changed_nothing(
        db_alias,
        backup_id,
        snapshot(db_alias),
        f"nothing was changed: {tool} was killed by SIGKILL.",
    )


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_relayed_restore_whose_script_does_not_end_with_its_commit_changes_nothing(
    db_alias, settings, tmp_path
):
    """The COMMIT migrator takes out must be the script's last statement: a pg_restore
    that writes something else there (another version) fails the restore before COMMIT."""
    seed(db_alias)
    add_large_objects(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    change_large_objects(db_alias)
    changed = large_objects(db_alias)
    real = Path(settings.MIGRATOR["PG_BIN_DIR"])
    for tool in ("pg_dump", "psql"):
        (tmp_path / tool).symlink_to(real / tool)
    wrapper = tmp_path / "pg_restore"
    wrapper.write_text(f"#!/bin/sh\n'{real / 'pg_restore'}' \"$@\" | grep -v '^COMMIT;$'\n")
    wrapper.chmod(0o755)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(tmp_path)}

    _assert_failed_restore_changed_nothing(
        db_alias,
        backup_id,
        snapshot(db_alias),
        "the script pg_restore wrote does not end with its COMMIT (pg_restore (PostgreSQL) 16",
    )
    assert large_objects(db_alias) == changed


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("objects", [False, True], ids=["", "large objects"])
def test_a_native_postgresql_restore_of_a_backup_from_before_large_objects_were_counted(
    db_alias, backup_dir, objects
):
    """Such a manifest lacks the count: the restore expects large objects, and works."""
    seed(db_alias)
    if objects:
        add_large_objects(db_alias)
    backup_id = take_backup(db_alias)
    before = snapshot(db_alias), large_objects(db_alias)
    manifest = backup_dir / f"{backup_id}.json"
    document = json.loads(manifest.read_text())
    assert document["large_objects"] == (3 if objects else 0)
    del document["large_objects"], document["checksum"]
    manifest.write_text(json.dumps({**document, "checksum": _seal(document)}))
    assert get_manifest(backup_id).large_objects is None
    change_everything(db_alias)
    if objects:
        change_large_objects(db_alias)

    _, err, code = run_command("restore", backup_id, database=db_alias)

    assert (code, err) == (0, "")
    assert (snapshot(db_alias), large_objects(db_alias)) == before


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("objects", [False, True], ids=["", "large objects"])
@pytest.mark.parametrize(
    "race",
    [
        "the reader ends",
        "the reader ends between attempts",
        "migrator is killed between attempts",
        "psql is terminated",
    ],
)
def test_a_native_postgresql_restore_waiting_for_a_readers_lock(
    db_alias, backup_dir, race, objects
):
    """The restore's psql waits to lock a table a reader holds; then the race is run.

    Between attempts: its lock_timeout expired, it let go of what it had locked and sleeps
    before the next attempt. With large objects the script is relayed through migrator:
    the same either way."""
    seed(db_alias)
    if objects:
        add_large_objects(db_alias)
    before = snapshot(db_alias), large_objects(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    if objects:
        change_large_objects(db_alias)
    changed = snapshot(db_alias), large_objects(db_alias)
    reader = raw_connection(db_alias)
    with reader.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_account")  # ACCESS SHARE until it ends
    connections[db_alias].close()
    child = start_child(
        db_alias,
        "restore",
        backup_id,
        "--yes",
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        MIGRATOR_TEST_SETTINGS=json.dumps({"PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 50})
        if race.endswith("between attempts")
        else "{}",
    )
    waiting: list[int] = []

    def psql_waits(event: str = "wait_event_type = 'Lock'") -> bool:
        with connections[db_alias].cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'migrator backup' "
                f"AND {event} AND datname = current_database()"
            )
            waiting[:] = [row[0] for row in cursor.fetchall()]
        return bool(waiting) or child.poll() is not None

    wait_until(psql_waits, what="the restore's psql to wait for the reader's lock")
    assert waiting, child.communicate()
    if race.endswith("between attempts"):
        wait_until(
            lambda: psql_waits("wait_event = 'PgSleep'"),
            what="the restore's psql to sleep after a lock timeout",
        )
        assert waiting, child.communicate()
    if race == "migrator is killed between attempts":  # psql dies with it, before COMMIT
        child.kill()
        child.communicate(timeout=300)

        def psql_ended() -> bool:
            with connections[db_alias].cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [waiting[0]])
                return cursor.fetchone()[0] == 0

        wait_until(psql_ended, what="the killed restore's psql session to end")
        reader.rollback()
        reader.close()
        assert snapshot(db_alias), large_objects(db_alias) == changed
        assert Run.objects.using(db_alias).get(command="restore").outcome == "running"
        return
    if race == "psql is terminated":  # psql ends before it reaches the postlude
        with connections[db_alias].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [waiting[0]])
    reader.rollback()
    reader.close()
    _, err = child.communicate(timeout=300)

    outcome = Run.objects.using(db_alias).get(command="restore").outcome
    now = snapshot(db_alias), large_objects(db_alias)
    if race != "psql is terminated":
        assert (child.returncode, err, outcome) == (0, "", "succeeded"), err
        assert now == before
    else:
        assert (child.returncode, outcome) == (6, "failed"), err
        assert "Restore into 'default' failed and was rolled back; nothing was changed" in err
        assert "terminating connection" in err
        assert now == changed


def signalled(child: subprocess.Popen, signum: int, *, then: Callable[[], object] | None = None):
    """``child``'s stderr once ``signum`` was sent to it (and ``then`` called) and it ended."""
    try:
        child.send_signal(signum)
        if then is not None:
            then()
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    return err


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
def test_a_restore_stopped_by_a_signal_rolls_back_and_records_it(
    db_alias, backup_dir, tmp_path, signum, how
):
    """What a deploy tool sends (SIGTERM) or a person types (Ctrl-C) in the middle of
    pg_restore: the transaction is rolled back, the run recorded interrupted at once (not
    left running for the next command to find), one line, exit 5."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    child = start_paused_in_pg_restore(
        db_alias,
        backup_dir,
        tmp_path,
        *("restore", backup_id, "--yes", "--no-safety-backup"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = signalled(child, signum)  # psql is starting: the signal arrives as it is forked
    said = (
        f"Restore of {backup_id} into 'default' stopped by {how}; the run is recorded as "
        "interrupted."
    )
    assert (child.returncode, err) == (5, f"CommandError: {said}\n")
    assert snapshot(db_alias) == changed
    run = Run.objects.using(db_alias).get(command="restore")
    assert (run.outcome, run.error) == ("interrupted", said)


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
@pytest.mark.parametrize("command", ["restore", "safemigrate"])
def test_a_signal_during_the_backup_a_run_takes_first_interrupts_the_run(
    db_alias, backup_dir, tmp_path, signum, how, command
):
    """The run is interrupted (exit 5, recorded so), not its backup failed (exit 6)."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    args = {
        "restore": ("restore", backup_id, "--yes"),  # its safety backup
        "safemigrate": ("safemigrate", "--yes", "--backup"),
    }[command]
    child = start_paused_in_pg_restore(
        db_alias,
        backup_dir,
        tmp_path,
        *args,
        env={"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"},
        tool="pg_dump",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    err = signalled(child, signum)

    said = {
        "restore": f"Restore of {backup_id} into 'default' stopped by {how}; the run is "
        "recorded as interrupted.",
        "safemigrate": f"Interrupted by {how} during the backup taken first; nothing was "
        "changed, and the run is recorded as interrupted.",
    }[command]
    assert (child.returncode, err) == (5, f"CommandError: {said}\n")
    assert snapshot(db_alias) == changed
    assert applied(db_alias, "scenarios") == []
    assert Run.objects.using(db_alias).filter(command=command).latest("pk").outcome == "interrupted"


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
def test_a_backup_stopped_by_a_signal_says_so_in_one_json_document(
    db_alias, backup_dir, tmp_path, signum, how
):
    """Outside a run: no traceback, no silent death; nothing is stored."""
    seed(db_alias)
    child = start_paused_in_pg_restore(
        *(db_alias, backup_dir, tmp_path, "backup", "--json"),
        tool="pg_dump",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    child.send_signal(signum)
    out, err = child.communicate(timeout=60)

    said = f"Interrupted by {how}; run the command again to finish."
    assert (child.returncode, err) == (6, f"CommandError: {said}\n")
    document = json.loads(out)
    assert (document["error"], document["exit_code"]) == (said, 6)
    assert document["outcome"] == "interrupted"  # as a run's interruption says
    assert list_backups() == []


@pytest.mark.parametrize("format", FORMATS)
def test_a_restore_whose_run_id_the_backup_holds_reports_the_id_it_is_merged_under(
    db_alias, format
):
    """A database made again (its run ids start over) and restored: the restore's run,
    #1 there, is merged back beside the backup's #1 under a new id."""
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    backed_up = list(Run.objects.using(db_alias).order_by("pk").values())
    connection = connections[db_alias]
    RunStep.objects.using(db_alias).all().delete()
    Run.objects.using(db_alias).all().delete()
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [Run]):
            cursor.execute(sql)

    out, err, code = run_command("restore", backup_id, "--yes", "--json", database=db_alias)

    assert (code, err) == (0, ""), err
    restored = Run.objects.using(db_alias).get(command="restore")
    assert json.loads(out)["run_id"] == restored.pk
    assert restored.pk not in [run["id"] for run in backed_up]
    assert restored.outcome == "succeeded"
    assert list(Run.objects.using(db_alias).exclude(pk=restored.pk).order_by("pk").values()) == (
        backed_up
    )


# psql that, as the restore's (reading the postlude), ends as psql did, but first says DONE
# on the FIFO "paused" and waits for a line on the FIFO "go": its COMMIT is done meanwhile.
PSQL_DONE_THEN_WAITING = """#!/bin/sh
case " $* " in *postlude.sql*) ;; *) exec {real}/psql "$@";; esac
{real}/psql "$@"
status=$?
echo DONE > {paused}
read line < {go}
exit $status
"""


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
def test_a_signal_as_a_restore_commits_waits_until_it_is_recorded_done(
    db_alias, backup_dir, tmp_path, signum, how
):
    """Once psql has the postlude (the audit merge and the COMMIT), an interrupt no longer
    has a restored database recorded as interrupted: the restore ends and is recorded
    done, then the command stops, one line, exit 5."""
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    paused, go = fifos(tmp_path, "paused", "go")
    child = start_child(
        db_alias,
        *("restore", backup_id, "--yes", "--no-safety-backup"),
        MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        MIGRATOR_TEST_PG_BIN_DIR=str(
            bin_with(tmp_path, "psql", PSQL_DONE_THEN_WAITING, paused=paused, go=go)
        ),
    )
    assert paused.read_text() == "DONE\n"  # committed; psql not yet reaped
    err = signalled(child, signum, then=lambda: go.write_text("go\n"))
    said = (
        f"{how} arrived as the run committed; it finished first (its record says how it "
        "ended), and the command stops here."
    )
    assert (child.returncode, err) == (5, f"CommandError: {said}\n")
    assert snapshot(db_alias) == before
    assert Run.objects.using(db_alias).get(command="restore").outcome == "succeeded"


def long_report(alias: str, table: str):
    """A session that has read ``table`` in a transaction it keeps open; and its pid."""
    reader = raw_connection(alias, application_name="long report")
    with reader.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # ACCESS SHARE until it ends
        cursor.execute("SELECT pg_backend_pid()")
        return reader, cursor.fetchone()[0]


def refused_past_a_long_report(
    alias: str, backup_id: str, table: str, settings, *, lock_timeout: float, locking: str
) -> tuple[str, int]:
    """``restore`` while a long report holds ``table``: refused after two waits of
    ``lock_timeout`` for ``locking``, naming the report. Its error, and the report's pid."""
    reader, pid = long_report(alias, table)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": lock_timeout, "LOCK_RETRIES": 1}
    try:
        out, err, code = run_command("restore", backup_id, "--yes", database=alias)
    finally:
        reader.rollback()
        reader.close()
    assert (code, out) == (6, "")
    assert err.startswith(
        f"Restore into '{alias}' could not lock {locking} within lock_timeout {lock_timeout}s "
        f"in 2 attempt(s); blocked by pid {pid} ('long report', idle in transaction, query "
        "started "
    ), err
    return err, pid


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_postgresql_restore_a_long_transaction_keeps_waiting_changes_nothing(
    db_alias, backup_dir, settings
):
    """A reader that never lets go: the restore gives up after its attempts, exit 6."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    err, pid = refused_past_a_long_report(
        db_alias,
        backup_id,
        "ledger_entry",
        settings,
        lock_timeout=0.1,
        locking="public.ledger_entry",
    )
    assert err.endswith(
        "on ledger_entry. Nothing was changed: end or wait for that session, then run again "
        "(MIGRATOR['PG_LOCK_TIMEOUT'] and LOCK_RETRIES set how long the restore waits).\n"
    ), err
    assert snapshot(db_alias) == changed
    run = Run.objects.using(db_alias).get(command="restore")
    assert (run.outcome, f"blocked by pid {pid}" in run.error) == ("failed", True)


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_postgresql_restore_by_the_databases_owner_keeps_a_superusers_extension(
    db_alias, backup_dir, owner_with_a_superusers_extension
):
    """An application's role owns the database, not the extension a superuser installed in
    it: the restore keeps the extension instead of dropping and making it again, which
    only its owner may do."""
    backup_id, before = backed_up_with_the_extension(db_alias)

    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)

    assert (code, err) == (0, ""), err
    assert_restored_with_the_extension(db_alias, before)


def backed_up_with_the_extension(alias: str, *args: str) -> tuple[str, dict[str, list[tuple]]]:
    """A backup (``args``: backup's) of rows and of a column of the extension's type
    (``owner_with_a_superusers_extension``), changed afterwards; its id, and the rows."""
    seed(alias)
    execute(alias, "CREATE TABLE embedding (v vector(2))")
    execute(alias, "INSERT INTO embedding VALUES ('[1,2]')")
    before = snapshot(alias)
    backup_id = take_backup(alias, *args)
    change_everything(alias)
    execute(alias, "DELETE FROM embedding")
    return backup_id, before


def assert_restored_with_the_extension(alias: str, before: dict[str, list[tuple]]) -> None:
    """The rows as ``before``, the column of the extension's type too, and the extension
    the superuser installed as it was (its comment)."""
    assert snapshot(alias) == before
    assert execute(alias, "SELECT v::text FROM embedding") == [("[1,2]",)]
    assert execute(
        alias,
        "SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = %s",
        ["vector"],
    ) == [("similarity search",)]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("jobs", [None, 1], ids=["swapped in", "one transaction"])
def test_a_native_postgresql_restore_into_a_new_database_of_a_search_path_schema(
    db_alias, backup_dir, settings, jobs
):
    """Django's tables in their own schema (search_path): migrator's own tables, made before
    the restore, go into that schema, which the archive makes; a backup that does not
    make it is refused, exit 6, saying what to do."""
    if jobs:
        settings.MIGRATOR = {**settings.MIGRATOR, "RESTORE_JOBS": jobs}
    execute(db_alias, "CREATE SCHEMA appschema")
    options = connections[db_alias].settings_dict["OPTIONS"]
    own_schema = {"OPTIONS": {**options, "options": "-c search_path=appschema"}}
    new = f"migrator_{uuid.uuid4().hex[:12]}"
    _admin_execute(db_alias, f'CREATE DATABASE "{new}"')
    try:
        with repointed(db_alias, **own_schema):
            seed(db_alias)
            before = snapshot(db_alias)
            backup_id = take_backup(db_alias)
        with repointed(db_alias, NAME=new, **own_schema):
            out, err, code = run_command("restore", backup_id, "--force", database=db_alias)
            assert (code, err) == (0, ""), err
            assert snapshot(db_alias) == before
        with repointed(
            db_alias, NAME=new, OPTIONS={**options, "options": "-c search_path=elsewhere"}
        ):
            out, err, code = run_command("restore", backup_id, "--force", database=db_alias)
    finally:
        drop_test_database(db_alias, new)
    assert (code, out) == (6, "")
    assert err == (
        f"No schema of the search_path of {db_alias!r} ('elsewhere') exists and backup "
        f"{backup_id!r} makes none of them; create the schema (CREATE SCHEMA), or correct the "
        "search_path, then run again; nothing was changed.\n"
    )


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    "made_after",
    [
        "CREATE FUNCTION reporting.total() RETURNS bigint LANGUAGE sql "
        "AS 'SELECT count(*) FROM reporting.daily'",
        "CREATE FUNCTION mood_of(m reporting.mood) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE reporting.later AS (n int)",
        "CREATE DOMAIN reporting.positive AS int CHECK (VALUE > 0)",
        "CREATE FUNCTION dims(v vector) RETURNS int LANGUAGE sql AS 'SELECT vector_dims(v)'",
    ],
    ids=["function in its schema", "function of its type", "type", "domain", "extension's type"],
)
def test_a_native_postgresql_restore_drops_routines_and_types_made_after_the_backup(
    db_alias, backup_dir, made_after
):
    """pg_restore --clean drops the backup's schema, type or extension: what was made since
    and depends on it goes first, else that drop fails and no restore is possible."""
    seed(db_alias)
    execute(db_alias, "CREATE EXTENSION vector")
    execute(db_alias, "CREATE SCHEMA reporting")
    execute(db_alias, "CREATE TABLE reporting.daily (d date)")
    execute(db_alias, "CREATE TYPE reporting.mood AS ENUM ('ok', 'not ok')")
    execute(db_alias, "CREATE FUNCTION kept() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    execute(db_alias, made_after)

    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)

    assert (code, err) == (0, ""), err
    assert snapshot(db_alias) == before
    own = """
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'reporting') AND p.proname IN ('kept', 'total',
          'mood_of', 'dims')
        UNION ALL SELECT typname FROM pg_type WHERE typname IN ('mood', 'later', 'positive')
        ORDER BY 1"""
    assert execute(db_alias, own) == [("kept",), ("mood",)]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("create", "hold"),
    [
        ("CREATE MATERIALIZED VIEW item_names AS SELECT name FROM ledger_account", "item_names"),
        ("CREATE SEQUENCE invoice_no", "nextval('invoice_no')"),
    ],
    ids=["materialized view", "sequence"],
)
def test_a_native_postgresql_restore_retries_and_names_who_holds_what_it_cannot_lock_table(
    db_alias, backup_dir, settings, create, hold
):
    """LOCK TABLE takes no materialized view or sequence: their drops wait, bounded and
    retried the same, and the failure names the holder, not a private file."""
    seed(db_alias)
    execute(db_alias, create)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    name = hold.removeprefix("nextval('").removesuffix("')")
    err, pid = refused_past_a_long_report(
        db_alias,
        backup_id,
        hold if hold == name else f"(SELECT {hold}) AS n",
        settings,
        lock_timeout=0.1,
        locking=f"public.{name}",
    )
    assert f"on {name}. Nothing was changed" in err, err
    assert "prelude.sql" not in err, err
    assert snapshot(db_alias) == changed


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("schema", "table"),
    [("public", '"say ""hi"" table"'), ("public", '"v1.2"'), ('"Weird Schema"', '"Mixed ""q"" t"')],
)
def test_a_native_postgresql_restore_names_who_holds_a_table_whatever_its_name(
    db_alias, backup_dir, settings, schema, table
):
    """A quote or a dot in the name (or the schema's) still finds the session holding it."""
    seed(db_alias)
    execute(db_alias, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    execute(db_alias, f"CREATE TABLE {schema}.{table} (n int)")
    backup_id = take_backup(db_alias)
    err, pid = refused_past_a_long_report(
        db_alias,
        backup_id,
        f"{schema}.{table}",
        settings,
        lock_timeout=0.1,
        locking=f"{schema}.{table}",
    )
    assert "has since let go" not in err, err


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("race", ["the reader holds on", "the reader ends between attempts"])
def test_a_portable_postgresql_restore_waiting_for_a_long_transaction(
    db_alias, backup_dir, settings, race
):
    """Emptying the tables waits for a reader as a migration would: bounded and retried."""
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    change_everything(db_alias)
    changed = snapshot(db_alias)
    reader, pid = long_report(db_alias, "ledger_account")
    retries = 1 if race == "the reader holds on" else 50
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": retries}
    watcher = raw_connection(db_alias)
    watcher.autocommit = True

    def waits_for(pid) -> bool:
        with watcher.cursor() as cursor:  # another session waits for the reader's lock
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> %s "
                "AND relation = 'ledger_account'::regclass",
                [pid],
            )
            return cursor.fetchone()[0] > 0

    def release_between_attempts() -> None:
        wait_until(lambda: waits_for(pid), what="the restore to wait for the reader's lock")
        wait_until(lambda: not waits_for(pid), what="the restore's lock_timeout")
        reader.rollback()

    releaser = threading.Thread(target=release_between_attempts)
    if race == "the reader ends between attempts":
        releaser.start()
    try:
        out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)
    finally:
        if releaser.is_alive():
            releaser.join()
        reader.rollback()
        reader.close()
        watcher.close()
    if race == "the reader ends between attempts":
        assert (code, err) == (0, ""), err
        assert snapshot(db_alias) == before
        return
    assert (code, out) == (6, "")
    assert err.startswith(
        f"Restore into '{db_alias}' could not lock its tables within lock_timeout 0.2s in 2 "
        f"attempt(s); blocked by pid {pid} ('long report', idle in transaction, query started "
    ), err
    assert snapshot(db_alias) == changed


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_portable_postgresql_restore_migrating_forward_past_a_long_transaction(
    db_alias, backup_dir, settings, scenario
):
    """Into a database behind the backup, the restore first applies the migrations it
    lacks: their lock waits are bounded as the tables' emptying is, exit 6."""
    seed(db_alias)
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    backup_id = take_backup(db_alias, "--format", "portable")
    assert run_command("rollback", "scenarios", "0001", "--yes", database=db_alias)[2] == 0
    changed = snapshot(db_alias)
    refused_past_a_long_report(  # 0002 adds a column to scenarios_widget
        db_alias,
        backup_id,
        "scenarios_widget",
        settings,
        lock_timeout=0.2,
        locking="the tables its migrations change",
    )
    assert snapshot(db_alias) == changed
    assert applied(db_alias, "scenarios") == ["0001_initial"]


def test_two_portable_restores_migrating_forward_at_once_restore_it(db_alias, backup_dir, scenario):
    """Into a database behind the backup: the first to hold the lock migrates it forward
    and restores, the other then restores over it; the data is the backup's either way."""
    seed(db_alias)
    module = scenario("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    assert run_command("rollback", "scenarios", "0001", "--yes", database=db_alias)[2] == 0
    change_everything(db_alias)
    connections[db_alias].close()
    children = [
        start_child(
            db_alias,
            *("restore", backup_id, "--yes", "--noinput"),
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
            MIGRATOR_TEST_SCENARIO=module,
            MIGRATOR_TEST_SETTINGS='{"RUN_LOCK_TIMEOUT": 120}',
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]

    assert [child.returncode for child in children] == [0, 0], outputs
    assert snapshot(db_alias) == before
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    outcomes = Run.objects.using(db_alias).filter(command="restore").values_list("outcome")
    assert list(outcomes) == [("succeeded",), ("succeeded",)]


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_a_native_sqlite_restore_of_a_damaged_file_changes_nothing(db_alias, backup_dir):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    payload = bytearray((backup_dir / get_manifest(backup_id).payload).read_bytes())
    payload[4096:8192] = b"\xff" * 4096  # a page of garbage, under a valid checksum
    _reseal(backup_dir, backup_id, bytes(payload))

    _assert_failed_restore_changed_nothing(db_alias, backup_id, changed, "nothing was changed")


def test_a_portable_restore_into_a_database_ahead_of_the_backup_is_refused(db_alias, scenario):
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    scenario("basic")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    change_everything(db_alias)
    changed = snapshot(db_alias)

    _, err, code = run_command("restore", backup_id, database=db_alias)

    assert code == 6
    assert (
        f"Database {db_alias!r} has migrations the backup lacks (scenarios.0001_initial, "
        "scenarios.0002_widget_size, scenarios.0003_slow_step and 1 more); roll it back to the "
        "backup's state, or restore into an empty database." in err
    )
    assert snapshot(db_alias) == changed
    assert "scenarios_widget" in connections[db_alias].introspection.table_names()


OLDER_MIGRATOR = "0003_migrationhash_verbose_name_plural"  # before MigrationHash.fake
UPGRADE = ("0004_migrationhash_fake_run_ordering", "0005_migrationhash_fake_unknown")


def hash_rows(alias: str) -> list[tuple]:
    return list(
        MigrationHash.objects.using(alias)
        .order_by("id")
        .values_list("id", "app_label", "name", "checksum", "applied_at", "duration", "run_id")
    )


def restored_with_migrators_own_kept(alias: str, before: dict, hashes: list) -> list[tuple]:
    """Check that the backup's rows, ``django_migrations`` and hash records are back, then
    migrator's own migrations that came after the backup, as the database had them; the
    backup's hash records say whether their applies were faked no more (NULL), as
    migrator.0005 makes them say. Return those migrations' hash records."""
    after = snapshot(alias)
    migrations, later = after["migrations"][: -len(UPGRADE)], after["migrations"][-len(UPGRADE) :]
    assert {**after, "migrations": migrations} == before
    rows = hash_rows(alias)
    restored, upgrade = rows[: -len(UPGRADE)], [row[1:] for row in rows[-len(UPGRADE) :]]
    assert restored == hashes
    assert [(app, name) for _, app, name, _ in later] == [row[:2] for row in upgrade]
    assert [name for _, name in (row[:2] for row in upgrade)] == list(UPGRADE)
    fakes = MigrationHash.objects.using(alias).order_by("id").values_list("fake", flat=True)
    assert list(fakes)[: len(hashes)] == [None] * len(hashes)
    assert not MigrationHash.objects.using(alias).filter(fake=True).exists()
    out, err, _ = run_command("safemigrate", "--yes", database=alias)
    assert (out, err) == ("No migrations to apply.\n", "")
    assert run_command("verifymigrations", database=alias)[1:] == ("", 0)
    return upgrade


def test_a_portable_backup_of_an_older_migrator_restores_after_an_upgrade(
    db_alias, second_database
):
    """migrator's own migrations never put a database ahead of a backup: a portable backup
    taken with its tables at 0003 (an older version's) restores after the upgrade applied
    0004, in place and into a new database. Its rows come back into the installed version's
    tables (MigrationHash.fake takes its default), its own 0004 stays applied, with its hash
    record, and the audit recorded since the backup is kept."""
    seed(db_alias)
    assert run_command("migrate", "migrator", OLDER_MIGRATOR, database=db_alias)[2] == 0
    execute(db_alias, "DELETE FROM migrator_migrationhash WHERE name IN (%s, %s)", UPGRADE)
    assert "fake" not in table_columns(db_alias, "migrator_migrationhash")
    before, hashes = snapshot(db_alias), hash_rows(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    assert applied(db_alias, "migrator")[-1] == OLDER_MIGRATOR
    assert run_command("safemigrate", "--yes", database=db_alias)[2] == 0  # the upgrade
    upgrade = [row[1:] for row in hash_rows(db_alias)[-len(UPGRADE) :]]
    change_everything(db_alias)
    with audit.recorded(connections[db_alias], command="rollback", arguments={}) as later:
        RunStep.objects.using(db_alias).create(
            run=later, app_label="ledger", name="0005", direction="unapply"
        )

    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)

    assert (code, err) == (0, ""), err
    assert restored_with_migrators_own_kept(db_alias, before, hashes) == upgrade
    kept = Run.objects.using(db_alias).get(pk=later.pk)
    assert list(kept.steps.values_list("name", "direction")) == [("0005", "unapply")]

    with repointed(db_alias, NAME=second_database):
        out, err, code = run_command("restore", backup_id, "--yes", "--force", database=db_alias)

        assert (code, err) == (0, ""), err
        own = restored_with_migrators_own_kept(db_alias, before, hashes)
        assert [row[:3] for row in own] == [row[:3] for row in upgrade]  # recorded anew


def test_migrators_own_migrations_change_its_rows_only_as_field_defaults_do():
    """A portable restore loads an older migrator's rows into the installed version's
    tables, the fields they lack taking their defaults: right while migrator's migrations
    touch existing rows no other way. One that must (RunPython, RunSQL, a field removed
    or renamed) must have the portable restore do the same to the rows it loads."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    operations = [
        operation
        for (app_label, _), migration in loader.disk_migrations.items()
        if app_label == "migrator"
        for operation in migration.operations
    ]
    kinds = {type(operation).__name__ for operation in operations}
    assert kinds <= {
        *("CreateModel", "AddField", "AlterField", "AlterModelOptions", "AddIndex"),
        *("AddConstraint", "RunPython"),
    }
    assert all(
        operation.preserve_default and (operation.field.has_default() or operation.field.null)
        for operation in operations
        if isinstance(operation, AddField)
    )
    assert all(
        operation.field.null for operation in operations if isinstance(operation, AlterField)
    )
    replayed = {audit.fake_unknown.forget_unrecorded_fakes}  # what portable restores do too
    assert {op.code for op in operations if isinstance(op, RunPython)} <= replayed


@pytest.mark.parametrize(
    ("taken_with", "target", "recorded"),
    [
        (
            "integrity_squashed",
            "0001_squashed_0002_second",
            ["0001_initial", "0002_second", "0001_squashed_0002_second"],
        ),
        ("integrity_linear", "0002_second", ["0001_initial", "0002_second"]),
    ],
    ids=["applied as the squash", "applied before the squash came"],
)
def test_a_portable_backup_of_a_squashed_app_is_drilled_and_restored(
    db_alias, scenario, second_database, taken_with, target, recorded
):
    """The backup records the migrations a squash replaces (and the squash, when it was
    applied as one), which Django's loader takes out of the graph for the squash: the
    squash stands for them, in the drill and the restore, in place or into a new
    database, as it does in Django's loader."""
    seed(db_alias)
    scenario(taken_with)
    assert run_command("safemigrate", "scenarios", target, "--yes", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios") == recorded
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", "portable")
    scenario("integrity_squashed")  # the squash on disk from here on
    change_everything(db_alias)

    out, err, code = run_command("backup", "--verify", backup_id, "--full", database=db_alias)
    assert (code, err) == (0, ""), err
    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)
    assert (code, err) == (0, ""), err
    assert snapshot(db_alias) == before
    with repointed(db_alias, NAME=second_database):
        out, err, code = run_command("restore", backup_id, "--yes", "--force", database=db_alias)

        assert (code, err) == (0, ""), err
        assert snapshot(db_alias) == before
        tables = connections[db_alias].introspection.table_names()
        assert {"integrity_first", "integrity_second"} <= set(tables)
        out, err, _ = run_command("safemigrate", "--yes", database=db_alias)
        assert (out, err) == ("No migrations to apply.\n", "")


@pytest.mark.parametrize(
    ("taken_at", "now", "refusal"),
    [
        (
            "0003_third",
            "empty",
            "The backup's migrations scenarios.0001_initial, scenarios.0002_second, "
            "scenarios.0003_third are not on disk; cannot create its schema: check out the "
            "code it was taken with.",
        ),
        (
            "0001_initial",
            "integrity_squashed",
            "The backup has scenarios.0001_initial applied, only part of what "
            "scenarios.0001_squashed_0002_second replaces; no plan reaches that state while "
            "the squash is on disk: check out the code the backup was taken with.",
        ),
    ],
    ids=["not on disk", "part of a squash"],
)
def test_a_portable_restore_that_cannot_make_the_backups_schema_says_why_in_one_line(
    db_alias, scenario, second_database, taken_at, now, refusal
):
    seed(db_alias)
    scenario("integrity_linear")
    assert run_command("safemigrate", "scenarios", taken_at, "--yes", database=db_alias)[2] == 0
    backup_id = take_backup(db_alias, "--format", "portable")
    scenario(now)

    report = json.loads(
        run_command("backup", "--verify", backup_id, "--full", "--json", database=db_alias)[0]
    )
    assert report["cause"] == refusal
    with repointed(db_alias, NAME=second_database):
        out, err, code = run_command("restore", backup_id, "--yes", "--force", database=db_alias)

        assert (code, err) == (6, refusal + "\n")
        assert applied(db_alias, "scenarios") == []


@pytest.fixture
def second_database(db_alias, tmp_path) -> Iterator[str]:
    """Another fresh database of the same vendor, on the same server as db_alias's."""
    if connections[db_alias].vendor == "sqlite":
        yield str(tmp_path / "other.sqlite3")
        return
    name = f"migrator_{uuid.uuid4().hex[:12]}"
    _admin_execute(db_alias, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _admin_execute(db_alias, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backups_belong_to_a_database_not_to_the_alias_default(
    db_alias, second_database, backup_dir
):
    """Two databases, each used as 'default' by its own processes, share one BACKUP_DIR."""
    account = "from project.ledger.models import Account; "
    names = {"a": connections[db_alias].settings_dict["NAME"], "b": second_database}

    def on(which: str, *args: str) -> tuple[str, str, int]:
        done = run_child(
            db_alias,
            *args,
            MIGRATOR_TEST_TARGET=f"{db_alias}:{names[which]}",
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        )
        return done.stdout, done.stderr, done.returncode

    def accounts(which: str) -> str:
        listing = "print(*Account.objects.values_list('name', flat=True))"
        return on(which, "shell", "-v", "0", "-c", account + listing)[0].strip()

    backups = {}
    for which in names:
        assert on(which, "safemigrate", "--noinput")[2] == 0
        on(which, "shell", "-c", account + f"Account.objects.create(name={which!r})")
        backups[which] = on(which, "backup", "-v", "0")[0].strip()
    older_a, backups["a"] = backups["a"], on("a", "backup", "-v", "0")[0].strip()

    for which, other in (("a", "b"), ("b", "a")):
        listed = json.loads(on(which, "backup", "--list", "--json")[0])["backups"]
        assert backups[other] not in {m["id"] for m in listed}
        status = json.loads(on(which, "migrationstatus", "--json")[0])
        assert status["latest_backup"]["id"] == backups[which]
    listed = json.loads(on("a", "backup", "--list", "--all", "--json")[0])["backups"]
    assert {m["id"] for m in listed} == {older_a, backups["a"], backups["b"]}

    out, err, code = on("a", "restore", backups["b"], "--yes", "--noinput")
    assert (out, code) == ("", 6)
    assert err.startswith(f"CommandError: Backup {backups['b']!r} belongs to another database: ")
    assert names["b"] in err
    assert accounts("a") == "a"

    out, err, code = on("a", "backup", "--prune", "--keep", "0", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["deleted"] == [older_a]
    assert on("b", "backup", "--verify", backups["b"])[2] == 0

    out, err, code = on("a", "restore", backups["b"], "--force", "--yes", "--noinput")
    assert code == 0, err
    assert f"Forced: backup {backups['b']!r} is of " in out
    assert accounts("a") == "b"


@pytest.mark.parametrize("how", ["manifest not JSON", "altered manifest"])
def test_a_backup_whose_manifest_is_unreadable_is_named_by_the_list(db_alias, backup_dir, how):
    """It used to vanish from ``backup --list`` ("No backups.") with nothing said."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    if how == "manifest not JSON":
        (backup_dir / f"{backup_id}.json").write_text("{not json")
    else:
        _tamper(backup_dir, backup_id, how)
    _, why, _ = run_command("backup", "--show", backup_id, database=db_alias)

    out, err, code = run_command("backup", "--list", database=db_alias)
    assert (out, code) == ("No readable backups.\n", 0)
    assert err == f"Left out, unreadable: {why}"
    out, err, code = run_command("backup", "--list", "--json", database=db_alias)
    assert (err, code) == ("", 0)
    assert json.loads(out) == {
        "backups": [],
        "unreadable": [{"id": backup_id, "error": why.removesuffix("\n")}],
    }
    newer = take_backup(db_alias)  # the readable ones are listed as before
    out, err, _ = run_command("backup", "--list", database=db_alias)
    assert out.startswith(f"{newer}  ")
    assert err == f"Left out, unreadable: {why}"


def set_for_new_sessions(alias: str, setting: str, value: str) -> None:
    """``ALTER DATABASE ... SET``: what a DBA sets for the database (or a role), which every
    new session takes; Django's connection, already open, keeps its own."""
    name = connections[alias].settings_dict["NAME"]
    execute(alias, f'ALTER DATABASE "{name}" SET {setting} = {value}')


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_backup_counts_its_rows_past_a_databases_statement_timeout(db_alias):
    """pg_dump sets no statement_timeout for itself; neither does the session that counts
    the rows in its snapshot (a count taking longer than the database's timeout)."""
    seed(db_alias)
    execute(db_alias, "CREATE TABLE big AS SELECT generate_series(1, 200000) AS n")
    set_for_new_sessions(db_alias, "statement_timeout", "1")  # ms

    backup_id = take_backup(db_alias)

    assert get_manifest(backup_id).tables["public.big"] == 200000


# pg_dump that starts once migrator's snapshot session, done counting, has sat idle in its
# transaction for 0.5 s, or has been ended (at most 10 s).
PG_DUMP_AFTER_AN_IDLE_WHILE = """#!/bin/sh
if [ "$1" = "--version" ]; then exec {real}/pg_dump --version; fi
{real}/psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 <<'SQL'
DO $$
DECLARE idle interval; seen boolean := false; started timestamptz := clock_timestamp();
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    SELECT clock_timestamp() - state_change INTO idle FROM pg_stat_activity
    WHERE state = 'idle in transaction' AND query LIKE '%pg_largeobject_metadata%';
    EXIT WHEN idle > interval '0.5 s' OR (seen AND idle IS NULL)
      OR clock_timestamp() > started + interval '10 s';
    seen := seen OR idle IS NOT NULL;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
SQL
exec {real}/pg_dump "$@"
"""


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_native_backup_outlasting_a_databases_idle_in_transaction_timeout(
    db_alias, settings, tmp_path
):
    """The snapshot session waits idle in its transaction while pg_dump runs: as pg_dump
    does for itself, it sets no idle_in_transaction_session_timeout, so the server does
    not end it and throw a complete dump away."""
    seed(db_alias)
    set_for_new_sessions(db_alias, "idle_in_transaction_session_timeout", "100")  # ms
    bin_dir = bin_with(tmp_path, "pg_dump", PG_DUMP_AFTER_AN_IDLE_WHILE)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(bin_dir)}

    backup_id = take_backup(db_alias)

    assert get_manifest(backup_id).tables["public.ledger_entry"] == 4


def ledger_at(alias: str, migration: str) -> None:
    """The demo ledger migrated to ``migration`` only: the code on disk is ahead of it."""
    out, err, code = run_command(
        "safemigrate", "ledger", migration, "--yes", "--no-backup", database=alias
    )
    assert code == 0, err
    execute(alias, "INSERT INTO ledger_account (id, name) VALUES (1, 'alice')")


def test_a_portable_backup_with_a_removefield_pending_keeps_the_columns_data(db_alias):
    """The deployed code's model has no ``memo`` (0004 removes it, not applied yet): the
    backup is of the applied state, which its manifest records, memo's data included;
    a drill passes and a restore brings it back."""
    ledger_at(db_alias, "0003")
    for memo in ("first", "second"):
        execute(
            db_alias,
            "INSERT INTO ledger_entry (amount, memo, created, account_id, email) "
            "VALUES (1, %s, %s, 1, '')",
            [memo, timezone.now()],
        )
    backup_id = take_backup(db_alias, "--format", "portable")
    assert ("ledger", "0004_remove_entry_memo") not in get_manifest(backup_id).applied
    execute(db_alias, "UPDATE ledger_entry SET memo = 'changed'")

    assert run_command("backup", "--verify", backup_id, "--full", database=db_alias)[2] == 0
    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)

    assert (code, err) == (0, "")
    assert execute(db_alias, "SELECT memo FROM ledger_entry ORDER BY id") == [
        ("first",),
        ("second",),
    ]


def test_a_portable_backup_with_an_addfield_pending_is_taken(db_alias, backup_dir):
    """The deployed code's model has ``email`` (0002 adds it, not applied yet): the backup
    reads the columns the database has, and restores."""
    ledger_at(db_alias, "0001")
    execute(
        db_alias,
        "INSERT INTO ledger_entry (amount, memo, created, account_id) VALUES (1, 'm', %s, 1)",
        [timezone.now()],
    )
    backup_id = take_backup(db_alias, "--format", "portable")
    execute(db_alias, "DELETE FROM ledger_entry")

    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)

    assert (code, err) == (0, "")
    assert execute(db_alias, "SELECT memo FROM ledger_entry") == [("m",)]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("table", "lock"),
    [
        ("ledger_entry", "LOCK TABLE ledger_entry"),  # migrator's count waits too
        ("measurements", "LOCK TABLE ONLY measurements"),  # pg_dump's LOCK TABLE only
    ],
    ids=["table", "partitioned parent"],
)
def test_a_native_backup_waiting_for_a_lock_gives_up_naming_the_session_that_holds_it(
    db_alias, settings, table, lock
):
    """A long ALTER, a VACUUM FULL, a forgotten psql holding ACCESS EXCLUSIVE: the backup
    (pg_dump's LOCK TABLE, migrator's count) waits PG_LOCK_TIMEOUT x (1 + LOCK_RETRIES) at
    most, then fails in one line naming that session, exit 6, nothing stored."""
    seed(db_alias)
    execute(db_alias, "CREATE TABLE measurements (at date) PARTITION BY RANGE (at)")
    execute(
        db_alias,
        "CREATE TABLE measurements_2026 PARTITION OF measurements "
        "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 1}
    with held_by_a_holder(db_alias, lock) as pid:
        out, err, code = run_command("backup", database=db_alias)

    assert (code, out) == (6, "")
    assert err.startswith(
        f"Backup of '{db_alias}' could not lock public.{table} within 0.4s; blocked by "
        f"pid {pid} ('holder', idle in transaction, query started "
    ), err
    assert err.endswith(
        f"on {table}. Nothing was stored: end or wait for that session, then run again "
        "(MIGRATOR['PG_LOCK_TIMEOUT'] x (1 + LOCK_RETRIES) sets how long a backup waits).\n"
    ), err
    assert list_backups() == []


@contextmanager
def held_by_a_holder(alias: str, lock: str) -> Iterator[int]:
    """Meanwhile, a session (``'holder'``) that took ``lock`` (``LOCK TABLE x``) in ACCESS
    EXCLUSIVE mode, in a transaction it keeps open; yields its pid."""
    holder = raw_connection(alias, application_name="holder")
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"{lock} IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SELECT pg_backend_pid()")
            yield cursor.fetchone()[0]
    finally:
        holder.rollback()
        holder.close()


def waiting_for(alias: str, pid: int) -> list[str]:
    """The queries of the sessions waiting for a lock that session ``pid`` holds."""
    rows = execute(
        alias, "SELECT query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
    )
    return [query for (query,) in rows]


def started_waiting_for(alias: str, pid: int, *args: str, **env: str) -> subprocess.Popen:
    """A child command (``args``) once a session of its own (not only pg_dump's LOCK TABLE)
    waits for a lock that session ``pid`` holds: for up to 600 s x 2."""
    child = start_child(
        alias,
        *args,
        MIGRATOR_TEST_SETTINGS=json.dumps({"PG_LOCK_TIMEOUT": 600, "LOCK_RETRIES": 1}),
        **env,
    )
    wait_until(
        lambda: any(not q.startswith("LOCK TABLE") for q in waiting_for(alias, pid)),
        what="the backup to wait for the holder's lock",
    )
    return child


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
@pytest.mark.parametrize("format", FORMATS)
def test_a_backup_waiting_for_a_lock_stops_at_once_on_a_signal(
    db_alias, backup_dir, signum, how, format
):
    """Ctrl-C or SIGTERM while the backup waits for a table's lock (here up to 600 s x 2):
    the waiting statements are cancelled on the server and the command ends at once, in
    one line, exit 6, nothing stored, no session of its own left waiting."""
    stopped = stopped_while_its_backup_waits(
        db_alias, backup_dir, signum, "backup", "--format", format
    )

    assert stopped == (6, f"CommandError: Interrupted by {how}; run the command again to finish.\n")


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@STOPPED_BY
def test_a_signal_as_a_runs_backup_waits_for_a_lock_interrupts_the_run_at_once(
    db_alias, backup_dir, signum, how
):
    """In a run, SIGTERM raises migrator's own exception, not Ctrl-C's: it cancels the
    wait all the same; the run is interrupted (exit 5, recorded so), nothing applied."""
    stopped = stopped_while_its_backup_waits(
        db_alias,
        backup_dir,
        signum,
        *("safemigrate", "--yes", "--backup"),
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.basic",
    )

    said = (
        f"Interrupted by {how} during the backup taken first; nothing was changed, and "
        "the run is recorded as interrupted."
    )
    assert stopped == (5, f"CommandError: {said}\n")
    assert applied(db_alias, "scenarios") == []
    run = Run.objects.using(db_alias).get(command="safemigrate", outcome="interrupted")
    assert run.error == said


def stopped_while_its_backup_waits(
    alias: str, backup_dir: Path, signum: int, *args: str, **env: str
) -> tuple[int, str]:
    """Exit code and stderr of a child command (``args``) sent ``signum`` while its backup
    waits for a lock a holder keeps; it stored nothing, and left no session waiting."""
    seed(alias)
    with held_by_a_holder(alias, "LOCK TABLE ledger_entry") as pid:
        child = started_waiting_for(
            alias, pid, *args, MIGRATOR_TEST_BACKUP_DIR=str(backup_dir), **env
        )
        err = signalled(child, signum)
        assert list_backups() == []
        wait_until(lambda: waiting_for(alias, pid) == [], timeout=30, what="no waiter")
    return child.returncode, err


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_portable_backup_waiting_for_a_lock_gives_up_naming_the_session_that_holds_it(
    db_alias, backup_dir
):
    """As a native backup: PG_LOCK_TIMEOUT x (1 + LOCK_RETRIES) at most, then one line
    naming that session, exit 6, nothing stored (a child: unbounded, it would wait on)."""
    seed(db_alias)
    with held_by_a_holder(db_alias, "LOCK TABLE ledger_entry") as pid:
        done = run_child(
            db_alias,
            *("backup", "--format", "portable"),
            timeout=120,
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
            MIGRATOR_TEST_SETTINGS=json.dumps({"PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 1}),
        )

    assert (done.returncode, done.stdout) == (6, "")
    assert done.stderr.startswith(
        "CommandError: Backup of 'default' could not lock ledger_entry within 0.4s; blocked "
        f"by pid {pid} ('holder', idle in transaction, query started "
    ), done.stderr
    assert done.stderr.endswith(
        "on ledger_entry. Nothing was stored: end or wait for that session, then run again "
        "(MIGRATOR['PG_LOCK_TIMEOUT'] x (1 + LOCK_RETRIES) sets how long a backup waits).\n"
    ), done.stderr
    assert list_backups() == []
