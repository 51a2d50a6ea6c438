"""testmigrations: up/down/up round trips on a throwaway database, on SQLite and PostgreSQL."""

import json
import os
import sqlite3
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from django.db import connections

from migrator import roundtrip
from tests.conftest import _admin_execute
from tests.third_party import THIRD_PARTY_APPS
from tests.utils import (
    TTYInput,
    applied,
    run_child,
    run_command,
    start_child,
    wait_for_line,
)

RAISES_ERROR = "RuntimeError: scenario step failed on purpose"
NOTHING_ELSE = "0 failed, 0 not reached; 0 other(s): 0 applied once, 0 failed, 0 not reached.\n"


@pytest.fixture
def alias(db_alias, tmp_path, monkeypatch) -> str:
    """The database under test; a SQLite test database in tmp_path, not a shared file."""
    test_settings = connections[db_alias].settings_dict["TEST"]
    if connections[db_alias].vendor == "sqlite":
        monkeypatch.setitem(test_settings, "NAME", str(tmp_path / "throwaway.sqlite3"))
    return db_alias


def test_demo_passes_except_the_irreversible_data_migration(alias):
    out, err, code = run_command("testmigrations", "--noinput", "--json", database=alias)
    report = json.loads(out)
    assert code == 0, err
    statuses = {m["migration"]: m["status"] for m in report["migrations"]}
    assert statuses.pop("ledger.0005_normalise_account_names") == "irreversible"
    assert set(statuses.values()) == {"ok"}
    assert {"ledger.0001_initial", "ledger.0004_remove_entry_memo", "auth.0001_initial"} <= set(
        statuses
    )
    assert report["counts"] == {
        "ok": len(statuses),
        "differences": 0,
        "irreversible": 1,
        "failed": 0,
        "not_reached": 0,
    }
    assert report["planned"] == {"round_trips": len(statuses) + 1, "applied_once": 0}
    assert report["model_changes"] == []
    assert "  ledger.0004_remove_entry_memo... ok (" in err


def test_strict_makes_the_irreversible_migration_exit_7(alias):
    out, err, code = run_command(
        "testmigrations", "ledger", "--strict", "--noinput", database=alias
    )
    assert code == 7
    assert err.endswith(
        "--strict: 1 irreversible migration(s): ledger.0005_normalise_account_names.\n"
    )
    assert (
        "  ledger.0005_normalise_account_names: irreversible, skipped (Raw Python operation)\n"
        in (out)
    )
    assert out.endswith(f"5 round trip(s): 4 ok, 0 differences, 1 irreversible, {NOTHING_ELSE}")


def test_reverse_that_does_not_restore_the_schema_exits_2_naming_the_difference(alias, scenario):
    scenario("roundtrip_nullable")
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 2
    assert err.endswith(
        "2 migration(s) do not restore the schema: "
        "scenarios.0002_drop_email, scenarios.0004_drop_code_index.\n"
    )
    assert out == (
        "Round trips on "
        f"{connections[alias].creation._get_test_db_name()!r} (test database of {alias!r}):\n"
        "  scenarios.0002_drop_email: DIFFERENCES\n"
        "    rt_entry.email: NULL after round trip, NOT NULL before\n"
        "  scenarios.0004_drop_code_index: DIFFERENCES\n"
        "    rt_entry: index on (code) named 'rt_entry_code_renamed' after round trip, "
        "'rt_entry_code_idx' before\n"
        "    rt_entry: index 'rt_entry_code_renamed' on (code) present after re-applying, "
        "absent after the first apply\n"
        f"4 round trip(s): 2 ok, 2 differences, 0 irreversible, {NOTHING_ELSE}"
    )


def test_reverse_that_raises_exits_5_and_the_walk_goes_on(alias, scenario):
    scenario("roundtrip_raises")
    out, err, code = run_command(
        "testmigrations", "scenarios", "--noinput", "--json", database=alias
    )
    assert code == 5
    assert err.endswith(
        "1 migration(s) failed their round trip: scenarios.0002_breaks_backwards.\n"
    )
    assert "  scenarios.0002_breaks_backwards... FAILED (" in err
    report = json.loads(out)
    results = {m["migration"]: m for m in report["migrations"]}
    failed = results["scenarios.0002_breaks_backwards"]
    assert (failed["status"], failed["phase"], failed["error"]) == (
        "failed",
        "unapply",
        RAISES_ERROR,
    )
    assert results["scenarios.0003_after"]["status"] == "ok"
    assert (report["exit_code"], report["outcome"]) == (5, "failed")
    assert (
        report["error"]
        == "1 migration(s) failed their round trip: scenarios.0002_breaks_backwards."
    )


def test_failure_while_applying_blocks_what_depends_on_it_and_counts_agree(alias, scenario):
    scenario("failing")
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 5
    assert "Round trips of 3 migration(s); 0 other(s) to apply once.\n" in err
    assert "  scenarios.0002_breaks: FAILED\n    apply: " + RAISES_ERROR + "\n" in out
    assert (
        "  Not reached (depends on scenarios.0002_breaks, which is not applied after its "
        "failure): scenarios.0003_after\n"
    ) in out
    assert out.endswith(
        "3 round trip(s): 1 ok, 0 differences, 0 irreversible, 1 failed, 1 not reached; "
        "0 other(s): 0 applied once, 0 failed, 0 not reached.\n"
    )


def test_a_migration_that_calls_sys_exit_fails_its_round_trip(alias, scenario, monkeypatch):
    """SystemExit(0) ended testmigrations with exit 0 and no report."""
    scenario("failing")
    monkeypatch.setenv("FAIL_WITH", "exit")
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 5
    assert "  scenarios.0002_breaks: FAILED\n    apply: SystemExit: 0\n" in out


def test_reapply_failure_shows_the_database_error_and_the_walk_goes_on(alias, scenario):
    """A no-op reverse leaves the seeded row: re-applying duplicates it (wagtailcore 0025).

    On SQLite the schema editor's constraint check raises TransactionManagementError
    over the IntegrityError; the report names the IntegrityError.
    """
    scenario("roundtrip_reapply_fails")
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 5
    assert "Round trips of 3 migration(s); 0 other(s) to apply once.\n" in err
    assert "  scenarios.0003_after... ok (" in err
    error = {
        "sqlite": "IntegrityError: UNIQUE constraint failed: rt_item.id",
        "postgresql": "IntegrityError: duplicate key value violates unique constraint "
        '"rt_item_pkey" DETAIL:  Key (id)=(1) already exists.',
    }[connections[alias].vendor]
    assert out.split("\n", 1)[1] == (
        "  scenarios.0002_seed: FAILED\n"
        f"    reapply: {error}\n"
        "    The schema is as its first apply left it: recorded as applied, and the walk went "
        "on from there.\n"
        "3 round trip(s): 2 ok, 0 differences, 0 irreversible, 1 failed, 0 not reached; "
        "0 other(s): 0 applied once, 0 failed, 0 not reached.\n"
    )


def test_a_reapply_failure_after_a_squash_goes_on_with_the_squashs_models(alias, scenario):
    """The walk goes on from the recorded state, where the squash (recorded under the names
    it replaces) counts as applied: 0004 alters its model (wagtailcore 0025, then 0026)."""
    scenario("roundtrip_squash_then_fails")

    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)

    assert code == 5, err
    assert "  scenarios.0003_seed: FAILED\n    reapply: IntegrityError: " in out
    assert "  scenarios.0004_note... ok (" in err
    assert "3 round trip(s): 2 ok, 0 differences, 0 irreversible, 1 failed, 0 not reached" in out


def test_reverse_that_leaves_an_index_behind_exits_2_naming_it(alias, scenario):
    """The re-apply fails on the index the reverse left: the finding is the reverse."""
    scenario("roundtrip_leftover_index")
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 2
    assert err.endswith("1 migration(s) do not restore the schema: scenarios.0002_name_index.\n")
    error = {
        "sqlite": "OperationalError: index rt_item_name_idx already exists",
        "postgresql": 'ProgrammingError: relation "rt_item_name_idx" already exists',
    }[connections[alias].vendor]
    assert out.split("\n", 1)[1] == (
        "  scenarios.0002_name_index: DIFFERENCES\n"
        "    rt_item: index 'rt_item_name_idx' on (name) present after round trip, absent before\n"
        f"    reapply: {error}\n"
        "    The schema is as its first apply left it: recorded as applied, and the walk went "
        "on from there.\n"
        f"3 round trip(s): 2 ok, 1 differences, 0 irreversible, {NOTHING_ELSE}"
    )


PAUSING = {
    "MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.roundtrip_pause",
    "PAUSE_AT": "scenarios.0002_pause",
}


def _report_of(stdout: str) -> dict:
    """The --json report of a child whose pause points also printed PAUSED on stdout."""
    return json.loads("".join(line for line in stdout.splitlines() if line != "PAUSED"))


def test_two_runs_sharing_a_test_database_take_turns_and_both_report_correctly(db_alias):
    """Each child uses the test database name of one database (issue 14, item 7)."""
    test_name = connections[db_alias].creation._get_test_db_name()
    argv = ("testmigrations", "scenarios", "--noinput", "--json")
    first = start_child(db_alias, *argv, **PAUSING)
    second = None
    try:
        wait_for_line(first, "PAUSED")  # the first run holds its test database
        second = start_child(db_alias, *argv, **{**PAUSING, "PAUSE_AT": None})
        waiting = next(line for line in second.stderr if line.startswith("Waiting for "))
        assert waiting.rstrip().endswith(f", which uses test database {test_name!r}...")
        first.stdin.write("\n\n")  # the first apply and the re-apply
        first.stdin.flush()
        results = [child.communicate(timeout=300) for child in (first, second)]
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    for child, (out, err) in zip((first, second), results, strict=True):
        assert child.returncode == 0, err
        report = _report_of(out)
        assert [(m["migration"], m["status"]) for m in report["migrations"]] == [
            ("scenarios.0001_create", "ok"),
            ("scenarios.0002_pause", "ok"),
        ]
    assert not _test_database_exists(db_alias, test_name)


def test_a_run_killed_mid_round_trip_leaves_no_lock_and_the_next_run_replaces_its_database(
    db_alias,
):
    """kill -9 while the test database is locked: the next run takes over at once."""
    test_name = connections[db_alias].creation._get_test_db_name()
    child = start_child(db_alias, "testmigrations", "scenarios", "--noinput", **PAUSING)
    try:
        wait_for_line(child, "PAUSED")
    finally:
        child.kill()  # SIGKILL: no cleanup code runs
        child.wait(timeout=30)
    assert _test_database_exists(db_alias, test_name)  # left behind, as Django's runner would
    done = run_child(
        db_alias,
        "testmigrations",
        "scenarios",
        "--noinput",
        "--json",
        timeout=120,
        MIGRATOR_TEST_SCENARIO=PAUSING["MIGRATOR_TEST_SCENARIO"],
    )
    assert done.returncode == 0, done.stderr
    assert "Waiting for " not in done.stderr
    assert json.loads(done.stdout)["counts"]["ok"] == 2
    assert not _test_database_exists(db_alias, test_name)


def test_results_from_a_test_database_taken_away_are_not_reported(db_alias):
    """Another tool drops the test database mid-run: no result, exit 1 (issue 14, item 7)."""
    test_name = connections[db_alias].creation._get_test_db_name()
    child = start_child(db_alias, "testmigrations", "scenarios", "--noinput", **PAUSING)
    try:
        wait_for_line(child, "PAUSED")
        if connections[db_alias].vendor == "sqlite":
            Path(test_name).unlink()
        else:
            _admin_execute(db_alias, f'DROP DATABASE "{test_name}" WITH (FORCE)')
        child.stdin.write("\n\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1
    assert out.strip("PAUSED\n") == ""
    assert err.endswith(
        f"Test database {test_name!r} was dropped or replaced by another process during the "
        "run; no result is reported. Run testmigrations again.\n"
    )
    assert not _test_database_exists(db_alias, test_name)


def test_the_configured_database_is_untouched(alias):
    assert run_command("safemigrate", "ledger", "0002", database=alias)[2] == 0
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO ledger_account (name) VALUES ('Kept')")
    before = _state_of(alias)
    name = connection.settings_dict["NAME"]
    test_name = connection.creation._get_test_db_name()
    assert run_command("testmigrations", "ledger", "--noinput", database=alias)[2] == 0
    assert connection.settings_dict["NAME"] == name
    assert _state_of(alias) == before
    assert applied(alias, "ledger") == ["0001_initial", "0002_entry_email"]
    assert not _test_database_exists(alias, test_name)


def test_keepdb_keeps_the_test_database_and_reuses_it(alias, scenario):
    scenario("roundtrip_raises")
    connection = connections[alias]
    test_name = connection.creation._get_test_db_name()
    try:
        out, _, code = run_command(
            "testmigrations", "scenarios", "--keepdb", "--noinput", "--json", database=alias
        )
        assert code == 5
        assert _test_database_exists(alias, test_name)
        out, err, code = run_command(
            "testmigrations", "scenarios", "--keepdb", "--noinput", "--json", database=alias
        )
        assert (code, json.loads(out)["migrations"]) == (0, [])
        assert f"Using existing test database {test_name!r} for alias {alias!r}" in err
    finally:
        run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert not _test_database_exists(alias, test_name)


def test_an_existing_test_database_needs_noinput_to_be_replaced(alias, scenario):
    scenario("roundtrip_raises")
    test_name = connections[alias].creation._get_test_db_name()
    run_command("testmigrations", "scenarios", "--keepdb", "--noinput", database=alias)
    _, err, code = run_command("testmigrations", "scenarios", database=alias)
    assert code == 3
    assert err == (
        f"Test database {test_name!r} for alias {alias!r} already exists. No terminal to ask "
        "on; pass --noinput to replace it or --keepdb to reuse it.\n"
    )
    assert run_command("testmigrations", "scenarios", "--noinput", database=alias)[2] == 5
    assert not _test_database_exists(alias, test_name)


@pytest.mark.parametrize(("answer", "code"), [("yes\n", 5), ("no\n", 3)])
def test_an_existing_test_database_is_replaced_when_a_terminal_says_yes(
    alias, scenario, answer, code
):
    scenario("roundtrip_raises")
    test_name = connections[alias].creation._get_test_db_name()
    run_command("testmigrations", "scenarios", "--keepdb", "--noinput", database=alias)
    out, err, exit_code = run_command(
        "testmigrations", "scenarios", database=alias, stdin=TTYInput(answer)
    )
    assert exit_code == code
    assert out.startswith(
        f"Test database {test_name!r} for alias {alias!r} already exists. Delete it?\n"
        "Type 'yes' to continue: "
    )
    if code == 3:
        assert err == "Cancelled; the test database was left as it was.\n"
        assert _test_database_exists(alias, test_name)
        run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert not _test_database_exists(alias, test_name)


def test_a_test_database_named_as_the_configured_one_is_refused(alias, monkeypatch):
    connection = connections[alias]
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":  # the same file, spelled another way
        name = os.path.relpath(name)
    monkeypatch.setitem(connection.settings_dict["TEST"], "NAME", name)
    _, err, code = run_command("testmigrations", "--noinput", database=alias)
    assert (code, err) == (
        1,
        f"The test database of {alias!r} is the configured database itself; "
        "set DATABASES[...]['TEST']['NAME'] to another name.\n",
    )


def test_a_test_database_named_as_another_aliass_database_is_refused(alias, monkeypatch, tmp_path):
    """--noinput replaces an existing test database: never one that another alias uses."""
    connection = connections[alias]
    orders = str(tmp_path / "orders.sqlite3") if connection.vendor == "sqlite" else "orders"
    if connection.vendor == "sqlite":
        sqlite3.connect(orders).close()
    monkeypatch.setitem(
        connections.settings, "orders", {**connection.settings_dict, "NAME": orders}
    )
    monkeypatch.setitem(connection.settings_dict["TEST"], "NAME", orders)
    try:
        _, err, code = run_command("testmigrations", "--noinput", database=alias)
    finally:
        del connections["orders"]
    assert (code, err) == (
        1,
        f"The test database of {alias!r} ({orders!r}) is the database that alias 'orders' is "
        f"configured with; set DATABASES[{alias!r}]['TEST']['NAME'] to another name.\n",
    )
    if connection.vendor == "sqlite":
        assert os.path.exists(orders)


def test_names_derived_from_a_tables_earlier_name_are_no_difference(alias, scenario):
    """After AlterModelTable, indexes and keys keep the names Django derived from the old
    table name; a round trip derives them from the new one (plain migrate does the same):
    nobody chose either, and Django finds them by their columns."""
    scenario("roundtrip_renamed_table")
    out, err, code = run_command(
        "testmigrations", "scenarios", "--noinput", "--json", database=alias
    )
    results = {m["migration"]: m for m in json.loads(out)["migrations"]}
    assert {label: r["differences"] for label, r in results.items()} == {
        f"scenarios.{name}": []
        for name in ("0001_initial", "0002_rename_table", "0003_bar_flag", "0004_remove_group")
    }, err
    assert code == 2  # the scenarios app has no models: only its migrations' state differs


def test_a_reverse_after_a_partly_rendered_state_sees_one_set_of_models(alias, scenario):
    """plain migrate unapplies 0003 fine: its state is rendered whole. The round trip's was
    carried from 0002 half re-rendered, so Permission's key pointed at a ContentType class
    the reverse did not get: 'Cannot query ...: Must be "ContentType" instance'."""
    scenario("roundtrip_delayed_state")
    out, err, code = run_command(
        "testmigrations", "scenarios", "--noinput", "--json", database=alias
    )
    results = {m["migration"]: (m["status"], m["error"]) for m in json.loads(out)["migrations"]}
    assert results["scenarios.0003_permission"] == ("ok", ""), err


def test_model_changes_without_a_migration_exit_2(alias, scenario):
    scenario("basic")  # migrations create models that the model-less scenarios app lacks
    out, err, code = run_command("testmigrations", "scenarios", "--noinput", database=alias)
    assert code == 2
    assert err.endswith(
        "Models have changes that are not in a migration; run 'python manage.py makemigrations'.\n"
    )
    assert "  Model changes without a migration:\n    scenarios: Delete model Ledger\n" in out
    assert out.endswith(f"4 round trip(s): 4 ok, 0 differences, 0 irreversible, {NOTHING_ELSE}")


def test_since_round_trips_only_the_migrations_a_git_range_added(
    alias, scenario, settings, tmp_path, monkeypatch
):
    package = f"since_{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    migrations = repo / package
    migrations.mkdir(parents=True)
    (migrations / "__init__.py").write_text("")
    _write_migration(migrations, "0001_base", None, "CREATE TABLE rt_base (id integer)")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "tag", "base")
    _write_migration(migrations, "0002_added", "0001_base", "CREATE TABLE rt_new (id integer)")
    _write_migration(migrations, "0003_added", "0002_added", "CREATE TABLE rt_more (id integer)")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "feature")
    monkeypatch.syspath_prepend(str(repo))
    settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "scenarios": package}

    out, err, code = run_command(
        "testmigrations", "scenarios", "--since", "base", "--noinput", "--json", database=alias
    )
    report = json.loads(out)
    assert code == 0, err
    assert [(m["migration"], m["status"]) for m in report["migrations"]] == [
        ("scenarios.0002_added", "ok"),
        ("scenarios.0003_added", "ok"),
    ]
    assert report["base"] == ["scenarios.0001_base"]
    assert report["since"] == "base"

    out, _, code = run_command(
        "testmigrations", "scenarios", "--since", "HEAD", "--noinput", "--json", database=alias
    )
    assert (code, json.loads(out)["migrations"]) == (0, [])
    _, err, code = run_command(
        "testmigrations", "--since", "no-such-ref", "--noinput", database=alias
    )
    assert code == 1
    assert err.startswith("--since 'no-such-ref': git diff in "), err
    assert err.endswith(
        "; give a branch, tag or commit that this clone has "
        "(a shallow CI clone may need 'git fetch' first).\n"
    )
    assert len(err.splitlines()) == 1


def test_since_refuses_an_option_as_revision(alias):
    _, err, code = run_command("testmigrations", "--since=--output=x", "--noinput", database=alias)
    assert (code, err) == (1, "'--output=x' is not a git revision.\n")


def test_unknown_app_label_exits_1(alias):
    _, err, code = run_command("testmigrations", "nope", "--noinput", database=alias)
    assert code == 1
    assert err.startswith("No installed app with label 'nope'.")


def test_snapshots_compare_columns_constraints_and_reuse_unchanged_tables(alias):
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE rt_a (id integer PRIMARY KEY, name varchar(20) NOT NULL)")
        cursor.execute("CREATE TABLE rt_b (id integer PRIMARY KEY)")
    first = roundtrip.take_snapshot(connection)
    with connection.cursor() as cursor:
        cursor.execute("CREATE UNIQUE INDEX rt_a_name_uniq ON rt_a (name)")
        cursor.execute("ALTER TABLE rt_a ADD COLUMN size integer DEFAULT 3")
    second = roundtrip.take_snapshot(connection, first)
    assert second.tables["rt_b"] is first.tables["rt_b"]
    assert roundtrip.compare_snapshots(first, second) == [
        "rt_a.size: present after round trip, absent before",
        "rt_a: unique index 'rt_a_name_uniq' on (name) present after round trip, absent before",
    ]
    assert roundtrip.compare_snapshots(second, first, now="now", then="then") == [
        "rt_a.size: missing now, present then",
        "rt_a: unique index 'rt_a_name_uniq' on (name) missing now, present then",
    ]


def test_constraints_under_invented_names_compare_by_what_they_are(alias):
    connection = connections[alias]

    def snapshot_of(columns: str) -> roundtrip.SchemaSnapshot:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS rt_tag")
            cursor.execute(f"CREATE TABLE rt_tag (id integer PRIMARY KEY, {columns})")
        return roundtrip.take_snapshot(connection)

    first = snapshot_of("name varchar(20) UNIQUE, slug varchar(20) UNIQUE")
    # Remade with its columns in another order, as SQLite's table remake may: SQLite
    # numbers the nameless constraints the other way round.
    remade = snapshot_of("slug varchar(20) UNIQUE, name varchar(20) UNIQUE")
    assert roundtrip.compare_snapshots(first, remade) == []
    lost = snapshot_of("slug varchar(20) UNIQUE, name varchar(20)")
    assert roundtrip.compare_snapshots(first, lost) == [
        "rt_tag: unique constraint on (name) missing after round trip, present before"
    ]
    chosen = snapshot_of(
        "slug varchar(20) UNIQUE, name varchar(20), CONSTRAINT rt_chosen UNIQUE (name)"
    )
    [line] = roundtrip.compare_snapshots(first, chosen)
    assert line.startswith("rt_tag: unique constraint on (name) named 'rt_chosen' after round ")
    if connection.vendor == "postgresql":  # named rt_tag_name_key; Django's name is a hash
        with connection.schema_editor() as editor:
            name = editor._create_index_name("rt_tag", ["name"], suffix="_uniq")
            editor.execute("ALTER TABLE rt_tag DROP CONSTRAINT rt_chosen")
            editor.execute(f"ALTER TABLE rt_tag ADD CONSTRAINT {name} UNIQUE (name)")
        assert roundtrip.compare_snapshots(first, roundtrip.take_snapshot(connection)) == []


def test_the_third_party_project_round_trips_without_false_differences(db_alias):
    """Their tables are remade on SQLite (django-taggit 0005, django-oauth-toolkit 0012),
    which renumbers nameless constraints: every round trip is exact all the same.

    In a child process with the project's settings: an app installed in-process leaves
    its system checks registered for the tests that follow.
    """
    done = run_child(
        db_alias,
        "testmigrations",
        *THIRD_PARTY_APPS,
        "--noinput",
        "--json",
        DJANGO_SETTINGS_MODULE="tests.third_party.settings",
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert {m["status"] for m in report["migrations"]} == {"ok"}
    assert report["counts"]["ok"] == report["planned"]["round_trips"]
    tested = {m["migration"] for m in report["migrations"]}
    assert {"taggit.0005_auto_20220424_2025", "oauth2_provider.0012_add_token_checksum"} <= tested


def _write_migration(directory: Path, name: str, previous: str | None, sql: str) -> None:
    dependencies = f'[("scenarios", "{previous}")]' if previous else "[]"
    table = sql.split()[2]
    (directory / f"{name}.py").write_text(
        textwrap.dedent(
            f"""\
            from django.db import migrations


            class Migration(migrations.Migration):
                dependencies = {dependencies}
                operations = [migrations.RunSQL({sql!r}, "DROP TABLE {table}")]
            """
        )
    )


def _git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)


def _state_of(alias: str) -> tuple:
    """Schema, migration records and data of the configured database."""
    connection = connections[alias]
    snapshot = roundtrip.take_snapshot(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
        records = cursor.fetchall()
        cursor.execute("SELECT name FROM ledger_account")
        rows = cursor.fetchall()
    return dict(snapshot.tables), records, rows


def _test_database_exists(alias: str, name: str) -> bool:
    connection = connections[alias]
    if connection.vendor == "sqlite":
        return Path(name).exists()
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None
