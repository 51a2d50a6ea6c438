"""safemigrate speaks migrate's whole dialect: each flag compared with migrate on one database."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DatabaseError, connections

from migrator import locking, runner
from migrator.models import Run
from migrator.types import RunOptions
from tests.utils import (
    applied,
    run_child,
    run_command,
    start_child,
    table_columns,
    wait_for_line,
)

GONE = "INSERT INTO django_migrations (app, name, applied) VALUES ('ledger', %s, %s)"
PRUNE = ("safemigrate", "ledger", "--prune", "--noinput", "--yes", "--lock-timeout", "300")
PRODUCTION = {"MIGRATOR_TEST_ENVIRONMENT": "production"}


def tables(alias: str) -> set[str]:
    return set(connections[alias].introspection.table_names())


def sql(alias: str, statement: str, params: list | None = None) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, params or [])


def migrate_code(alias: str, *args: str) -> int:
    """migrate's exit code (its --check calls sys.exit)."""
    try:
        return run_command("migrate", *args, database=alias)[2]
    except SystemExit as exc:
        return int(exc.code)


def test_check_exits_1_while_migrations_are_unapplied_as_migrate_does(db_alias):
    for plan in ([], ["--plan"]):
        assert migrate_code(db_alias, "--check", *plan) == 1
        out, err, code = run_command("safemigrate", "--check", *plan, database=db_alias)
        assert code == 1
        assert "migration(s) not applied to" in err
    assert tables(db_alias) == set()  # --check applies nothing
    assert run_command("safemigrate", database=db_alias)[2] == 0
    for plan in ([], ["--plan"]):
        assert migrate_code(db_alias, "--check", *plan) == 0
        assert run_command("safemigrate", "--check", *plan, database=db_alias)[2] == 0


def test_a_migration_an_unapplied_squash_replaces_is_a_bad_target_naming_the_squash(
    db_alias, scenario
):
    """Nothing applied: the graph holds the squash, not what it replaces (migrate fails
    with NodeNotFoundError). The file is there: a bad target (exit 1), not a missing file."""
    scenario("integrity_squashed")
    said = (
        "Migration scenarios.0002_second is replaced by squash "
        "scenarios.0001_squashed_0002_second; target '0001_squashed_0002_second' instead.\n"
    )
    for plan in ([], ["--plan"]):
        assert run_command("safemigrate", "scenarios", "0002_second", *plan, database=db_alias) == (
            "",
            said,
            1,
        )
    assert tables(db_alias) == set()
    out, err, code = run_command(
        "safemigrate", "scenarios", "0001_squashed_0002_second", database=db_alias
    )
    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios") == [
        "0001_initial",
        "0002_second",
        "0001_squashed_0002_second",
    ]


def test_fake_initial_fakes_an_initial_migration_whose_tables_exist(db_alias):
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    forget = "DELETE FROM django_migrations WHERE app = 'ledger'"
    for command in ("migrate", "safemigrate"):
        sql(db_alias, forget)
        out, err, code = run_command(command, "ledger", "0001", "--fake-initial", database=db_alias)
        assert (code, err) == (0, "")
        assert "Applying ledger.0001_initial... FAKED" in out
        assert applied(db_alias, "ledger") == ["0001_initial"]
    sql(db_alias, forget)  # without the flag, both fail on the existing table
    with pytest.raises(DatabaseError):
        run_command("migrate", "ledger", "0001", database=db_alias)
    sql(db_alias, forget)
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 5


def test_run_syncdb_creates_the_tables_of_apps_without_migrations(db_alias, settings):
    settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "ledger": None}
    out, err, code = run_command("safemigrate", "--run-syncdb", database=db_alias)
    assert (code, err) == (0, "")
    assert "Synchronized apps without migrations: ledger" in out
    created = tables(db_alias)
    assert {"ledger_account", "ledger_entry"} <= created
    assert "email" in table_columns(db_alias, "ledger_entry")
    assert run_command("migrate", "--run-syncdb", database=db_alias)[2] == 0
    assert tables(db_alias) == created  # migrate finds nothing left to create
    run = Run.objects.using(db_alias).get(command="safemigrate")
    assert run.arguments["run_syncdb"] is True
    # An app with migrations cannot be synchronised, by either command (exit 1).
    settings.MIGRATION_MODULES = {
        k: v for k, v in settings.MIGRATION_MODULES.items() if k != "ledger"
    }
    assert run_command("migrate", "ledger", "--run-syncdb", database=db_alias)[2] == 1
    out, err, code = run_command("safemigrate", "ledger", "--run-syncdb", database=db_alias)
    assert (out, err, code) == (
        "",
        "Can't use --run-syncdb with app 'ledger': it has migrations.\n",
        1,
    )


def test_prune_forgets_migrations_whose_files_are_gone_as_migrate_does(db_alias):
    assert run_command("safemigrate", "ledger", database=db_alias)[2] == 0
    gone = "INSERT INTO django_migrations (app, name, applied) VALUES ('ledger', '0099_gone', %s)"
    outputs = {}
    for command in ("migrate", "safemigrate"):
        sql(db_alias, gone, ["2025-01-01 00:00:00"])
        out, err, code = run_command(command, "ledger", "--prune", database=db_alias)
        assert (code, err) == (0, ""), command
        outputs[command] = out
        assert "0099_gone" not in applied(db_alias, "ledger")
    assert outputs["safemigrate"] == outputs["migrate"]
    assert outputs["safemigrate"] == "Pruning migrations:\n  Pruning ledger.0099_gone OK\n"
    assert run_command("safemigrate", "ledger", "--prune", database=db_alias) == (
        "Pruning migrations:\n  No migrations to prune.\n",
        "",
        0,
    )
    assert run_command("migrate", "--prune", database=db_alias)[2] == 1
    out, err, code = run_command("safemigrate", "--prune", database=db_alias)
    assert (err, code) == ("Migrations can be pruned only when an app is specified.\n", 1)
    # A label migrate would refuse: a typo, an app that is no longer installed.
    sql(
        db_alias,
        "INSERT INTO django_migrations (app, name, applied) VALUES ('oldapp', '0001_initial', %s)",
        ["2025-01-01 00:00:00"],
    )
    for label in ("ledgr", "oldapp"):
        assert run_command("migrate", label, "--prune", database=db_alias)[2] == 1
        out, err, code = run_command("safemigrate", label, "--prune", database=db_alias)
        assert (out, code) == ("", 1)
        assert err.startswith(f"No installed app with label {label!r}. Apps with migrations: ")
    assert applied(db_alias, "oldapp") == ["0001_initial"]


def test_prune_with_check_prunes_then_exits_1_while_migrations_are_unapplied(db_alias):
    """As ``migrate --prune --check``: it prunes, then checks (it exited 0, whatever was
    unapplied); with --json, the one document says both."""
    assert run_command("safemigrate", "ledger", "0002", database=db_alias)[2] == 0
    sql(db_alias, GONE, ["0099_gone", "2025-01-01 00:00:00"])
    assert migrate_code(db_alias, "ledger", "--prune", "--check") == 1
    assert "0099_gone" not in applied(db_alias, "ledger")
    sql(db_alias, GONE, ["0099_gone", "2025-01-01 00:00:00"])
    assert run_command("safemigrate", "ledger", "--prune", "--check", database=db_alias) == (
        "Pruning migrations:\n  Pruning ledger.0099_gone OK\n",
        f"3 migration(s) not applied to {db_alias!r}.\n",
        1,
    )
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]
    sql(db_alias, GONE, ["0099_gone", "2025-01-01 00:00:00"])
    out, _, code = run_command(
        "safemigrate", "ledger", "--prune", "--check", "--json", database=db_alias
    )
    assert code == 1
    assert json.loads(out) == {
        "command": "safemigrate",
        "database": db_alias,
        "error": f"3 migration(s) not applied to {db_alias!r}.",
        "exit_code": 1,
        "outcome": "failed",
        "pruned": ["ledger.0099_gone"],
    }
    assert run_command("safemigrate", "ledger", database=db_alias)[2] == 0
    assert run_command("safemigrate", "ledger", "--prune", "--check", database=db_alias) == (
        "Pruning migrations:\n  No migrations to prune.\n",
        "",
        0,
    )


def test_prune_is_refused_with_plan_or_sql_which_change_nothing(db_alias):
    """--prune changes the database: with --plan it pruned and showed no plan; with --sql
    it was ignored. Refused in one line, exit 1, nothing pruned."""
    assert run_command("safemigrate", "ledger", "0002", database=db_alias)[2] == 0
    sql(db_alias, GONE, ["0099_gone", "2025-01-01 00:00:00"])
    for view in ("--plan", "--sql"):
        assert run_command("safemigrate", "ledger", "--prune", view, database=db_alias) == (
            "",
            f"Error: argument {view}: not allowed with argument --prune\n",
            1,
        )
    done = run_child(db_alias, "safemigrate", "ledger", "--plan", "--prune", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == "argument --prune: not allowed with argument --plan"
    assert done.stderr.endswith("error: argument --prune: not allowed with argument --plan\n")
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email", "0099_gone"]


def test_run_syncdb_asks_only_for_what_it_would_create(db_alias, settings):
    settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "ledger": None}
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    asked = ("safemigrate", "--run-syncdb", "--noinput")
    _, err, code = run_command(*asked, database=db_alias)
    assert code == 3
    assert f"Create the tables of ledger (no migrations) in {db_alias!r} in production?" in err
    assert run_command(*asked, "--yes", database=db_alias)[2] == 0
    assert run_command(*asked, database=db_alias) == ("No migrations to apply.\n", "", 0)


def test_run_syncdb_creates_nothing_another_process_created_meanwhile(db_alias, settings):
    settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "ledger": None}
    assert run_command("safemigrate", database=db_alias)[2] == 0  # all but ledger's tables
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    runs = Run.objects.using(db_alias).filter(command="safemigrate")
    before, events = runs.count(), []

    def confirm_while_another_process_syncs(question: str, expected: str) -> bool:
        assert question.startswith("Create the tables of ledger (no migrations)")
        call_command("migrate", "--run-syncdb", database=db_alias, verbosity=0)
        return True

    report = runner.safemigrate(
        options=RunOptions(database=db_alias, run_syncdb=True, backup=False),
        progress=events.append,
        confirm=confirm_while_another_process_syncs,
    )
    assert report.outcome == "nothing"
    assert "syncdb" not in [event.action for event in events]
    assert runs.count() == before
    assert {"ledger_account", "ledger_entry"} <= tables(db_alias)


def test_run_syncdb_killed_in_post_migrate_is_completed_by_the_next_run(db_alias):
    env = {"MIGRATOR_TEST_UNMIGRATED": "ledger"}
    argv = ("safemigrate", "--run-syncdb", "--noinput")
    child = start_child(db_alias, *argv, PAUSE_AT="post_migrate", **env)
    try:
        wait_for_line(child, "PAUSED")  # tables synchronised, migrations applied
        child.kill()
        child.wait(timeout=60)
    finally:
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
    done = run_child(db_alias, *argv, **env)
    assert (done.returncode, done.stdout) == (0, "No migrations to apply.\n")
    assert "interrupted" in done.stderr  # the killed run, found dead
    assert {"ledger_account", "ledger_entry"} <= tables(db_alias)
    ledger = Permission.objects.using(db_alias).filter(content_type__app_label="ledger")
    assert ledger.exists()  # post_migrate, completed by the next run
    outcomes = Run.objects.using(db_alias).values_list("outcome", flat=True)
    assert list(outcomes) == ["interrupted"]


def gone(alias: str, *names: str) -> None:
    """Applied migrations of the ledger whose files are gone."""
    assert run_command("safemigrate", "ledger", database=alias)[2] == 0
    for name in names:
        sql(alias, GONE, [name, "2025-01-01 00:00:00"])


def test_prune_in_production_asks_as_every_change_does(db_alias, settings):
    gone(db_alias, "0099_gone")
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    _, err, code = run_command("safemigrate", "ledger", "--prune", "--noinput", database=db_alias)
    assert code == 3
    assert "Forget 1 applied migration(s) whose files are gone (ledger.0099_gone)" in err
    assert "No terminal to ask on; pass --yes to confirm." in err
    assert "0099_gone" in applied(db_alias, "ledger")
    assert Run.objects.using(db_alias).get(outcome="refused").command == "safemigrate"
    out, err, code = run_command(*PRUNE, database=db_alias)
    assert (out, err, code) == ("Pruning migrations:\n  Pruning ledger.0099_gone OK\n", "", 0)
    assert "0099_gone" not in applied(db_alias, "ledger")


def waiting_for_the_lock(child) -> None:
    for line in child.stdout:
        if "Waiting for the migration lock" in line:
            return
    raise AssertionError(f"the child ended first: {child.stderr.read()}")


def test_prune_killed_while_it_waits_for_the_lock_changes_nothing(db_alias):
    gone(db_alias, "0099_gone")
    with locking.migration_lock(connections[db_alias], timeout=0):
        child = start_child(db_alias, *PRUNE, **PRODUCTION)
        try:
            waiting_for_the_lock(child)  # asked and confirmed (--yes) already
            child.kill()
            child.wait(timeout=60)
        finally:
            for stream in (child.stdin, child.stdout, child.stderr):
                stream.close()
    assert "0099_gone" in applied(db_alias, "ledger")
    done = run_child(db_alias, *PRUNE, **PRODUCTION)
    assert (done.returncode, done.stderr) == (0, "")
    assert "0099_gone" not in applied(db_alias, "ledger")
    assert not Run.objects.using(db_alias).filter(outcome="running").exists()


def test_prune_refuses_what_another_host_added_while_it_waited_for_the_lock(db_alias):
    gone(db_alias, "0099_gone")
    with locking.migration_lock(connections[db_alias], timeout=0):
        child = start_child(db_alias, *PRUNE, **PRODUCTION)
        waiting_for_the_lock(child)
        sql(db_alias, GONE, ["0098_gone", "2025-01-02 00:00:00"])  # nobody confirmed it
    out, err = child.communicate(timeout=300)
    assert child.returncode == 3, err
    assert "The plan changed while waiting for the lock (now: ledger.0098_gone" in err
    assert {"0098_gone", "0099_gone"} <= set(applied(db_alias, "ledger"))
