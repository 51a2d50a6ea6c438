"""rollback: validation before anything changes, then guard -> lock -> backup -> unapply -> record.

Every test runs on SQLite and PostgreSQL (the ``db_alias`` fixture) through the public
surface: the ``rollback`` command, as an operator or a deploy script runs it.
"""

import json
import time

import pytest
from django.db import connections
from django.utils import timezone

from migrator import guard, locking
from migrator.models import MigrationHash, Run
from tests.utils import (
    TTYInput,
    applied,
    execute,
    killed_when_paused,
    run_child,
    run_command,
    start_child,
    table_columns,
)

# Flags a deploy script passes when data loss is not what the test is about.
SCRIPTED = ("--noinput", "--yes", "--allow-data-loss")


def hashed(alias: str, app_label: str) -> list[str]:
    names = MigrationHash.objects.using(alias).filter(app_label=app_label)
    return sorted(names.values_list("name", flat=True))


def rollback_runs(alias: str) -> list[Run]:
    return list(Run.objects.using(alias).filter(command="rollback"))


def migrate(alias: str, *args: str) -> None:
    out, err, code = run_command("safemigrate", *args, database=alias)
    assert code == 0, err


def add_ledger_rows(alias: str) -> None:
    """At ledger 0004: two accounts with capitals in their names, three entries with email."""
    execute(alias, "INSERT INTO ledger_account (name) VALUES ('Alice'), ('BOB')")
    (account_id,) = execute(alias, "SELECT id FROM ledger_account WHERE name = 'Alice'")[0]
    for amount in (1, 2, 3):
        execute(
            alias,
            "INSERT INTO ledger_entry (amount, created, account_id, email) "
            "VALUES (%s, %s, %s, 'alice@example.com')",
            [amount, timezone.now(), account_id],
        )


# Validation: nothing changes, every problem at once ------------------------------------------


def test_irreversible_run_python_exits_7_naming_it_and_changes_nothing(db_alias):
    migrate(db_alias, "ledger")
    out, err, code = run_command("rollback", "ledger", "0003", *SCRIPTED, database=db_alias)
    assert code == 7
    assert err.startswith("Rollback ledger 0003 refused; nothing was changed:\n")
    assert (
        "  - ledger.0005_normalise_account_names cannot be unapplied: "
        "'Undo Raw Python operation' has no reverse.\n"
    ) in err
    assert "No backup taken before them is recorded" in err
    assert "ledger.0005_normalise_account_names" in out  # the plan is shown with the refusal
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert "memo" not in table_columns(db_alias, "ledger_entry")
    [refused] = rollback_runs(db_alias)  # the refusal is in the audit
    assert refused.outcome == "refused"
    assert refused.details["problems"][0]["migration"] == "ledger.0005_normalise_account_names"


def test_every_irreversible_step_is_reported_at_once(db_alias, scenario):
    scenario("rollback_irreversible")
    migrate(db_alias, "scenarios")
    _, err, code = run_command("rollback", "scenarios", "zero", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "scenarios.0002_python_forwards_only cannot be unapplied" in err
    assert "scenarios.0003_sql_forwards_only cannot be unapplied: 'Undo Raw SQL operation'" in err
    assert len(applied(db_alias, "scenarios")) == 4
    assert "size" in table_columns(db_alias, "scenarios_widget")


def test_an_irreversible_step_inside_separate_database_and_state_is_refused_first(
    db_alias, scenario
):
    """Django asks the outer operation alone: the undo ran, dropped the column, and failed
    on the RunPython without reverse."""
    scenario("rollback_separate_irreversible")
    migrate(db_alias, "scenarios")
    refused = "scenarios.0002_widget_size cannot be unapplied"
    out, err, code = run_command("rollback", "scenarios", "0001", "--plan", database=db_alias)
    assert refused in out + err
    _, err, code = run_command("rollback", "scenarios", "0001", *SCRIPTED, database=db_alias)
    assert code == 7
    assert refused in err
    assert "size" in table_columns(db_alias, "scenarios_widget")
    out, err, code = run_command("rollback", "scenarios", "0001", "--sql", database=db_alias)
    assert (code, err) == (0, "")
    assert "-- No SQL: " in out
    assert "irreversible" in out


def test_an_edited_file_exits_2_and_is_reported_with_the_other_problems(db_alias):
    migrate(db_alias, "ledger")
    MigrationHash.objects.using(db_alias).filter(name="0004_remove_entry_memo").update(
        checksum="sha256:1:" + "0" * 64
    )
    _, err, code = run_command("rollback", "ledger", "0003", *SCRIPTED, database=db_alias)
    assert code == 2
    assert "ledger.0004_remove_entry_memo" in err
    assert "changed after it was applied" in err
    assert "ledger.0005_normalise_account_names cannot be unapplied" in err
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ledgr", "0003"), "No app with migrations is labelled 'ledgr'; did you mean 'ledger'?"),
        (
            ("ledger", "0003_bakfill_email"),
            "No single migration of 'ledger' matches '0003_bakfill_email'; "
            "did you mean '0003_backfill_email'",
        ),
        (("ledger", "00"), "did you mean '0001_initial' or '0002_entry_email' or"),
        (("ledger", "0099"), "known: 0001_initial, 0002_entry_email, 0003_backfill_email,"),
        (
            ("auth", "0099"),
            "known: 0001_initial, 0002_alter_permission_name_max_length, "
            "0003_alter_user_email_max_length, ... 0010_alter_group_name_max_length, "
            "0011_update_proxy_permissions, 0012_alter_user_first_name_max_length (12).",
        ),
        (("auth", "00"), "'0003_alter_user_email_max_length' (or 9 more)?"),
    ],
)
def test_unknown_targets_exit_7_with_the_closest_names(db_alias, args, message):
    migrate(db_alias, "ledger", "0002")
    _, err, code = run_command("rollback", *args, *SCRIPTED, database=db_alias)
    assert code == 7
    assert message in err
    assert err.rstrip().endswith("Nothing was changed.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give a target (rollback <app_label> <migration_name|zero>) or --last."),
        (("ledger", "0001", "--last"), "or --last, not both."),
        (("ledger",), "Give the migration of 'ledger' to roll back to, or 'zero'"),
        (("ledger", "0001", "--restore"), "--restore goes with --last"),
    ],
)
def test_incomplete_requests_exit_1(db_alias, args, message):
    _, err, code = run_command("rollback", *args, database=db_alias)
    assert (code, message in err) == (1, True)


def test_a_target_that_is_not_applied_is_refused(db_alias):
    migrate(db_alias, "ledger", "0002")
    _, err, code = run_command("rollback", "ledger", "0004", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "ledger.0004_remove_entry_memo is not applied, so there is nothing to roll back" in err
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]


def test_rolling_back_to_where_it_is_does_nothing(db_alias):
    migrate(db_alias, "ledger", "0002")
    assert run_command("rollback", "ledger", "0002", *SCRIPTED, database=db_alias) == (
        "Nothing to roll back.\n",
        "",
        0,
    )
    assert rollback_runs(db_alias) == []


# --plan and --json --------------------------------------------------------------------------


def test_plan_names_the_dropped_column_its_table_and_rows_and_changes_nothing(db_alias, scenario):
    scenario("basic")
    migrate(db_alias, "scenarios")
    for weight in (1, 2, 3):
        execute(
            db_alias,
            "INSERT INTO scenarios_widget (name, size, colour, weight) "
            f"VALUES ('w', 0, '', {weight})",
        )
    out, err, code = run_command("rollback", "scenarios", "0003", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    assert "Data the rollback destroys:" in out
    destroyed = out.split("Data the rollback destroys:")[1]
    assert "scenarios_widget" in destroyed
    assert "weight" in destroyed
    assert "3" in destroyed
    assert out.rstrip().endswith("Validation passed; nothing was changed.")

    out, _, code = run_command(
        "rollback", "scenarios", "0003", "--plan", "--json", database=db_alias
    )
    document = json.loads(out)
    assert (code, document["outcome"]) == (0, "planned")
    assert [m["migration"] for m in document["plan"]] == ["scenarios.0004_widget_weight"]
    [finding] = document["data_loss"]
    assert finding["migration"] == "scenarios.0004_widget_weight"
    assert (finding["table"], finding["column"], finding["rows"]) == (
        "scenarios_widget",
        "weight",
        3,
    )
    assert finding["rows_exact"] is True
    assert applied(db_alias, "scenarios")[-1] == "0004_widget_weight"
    assert "weight" in table_columns(db_alias, "scenarios_widget")
    assert rollback_runs(db_alias) == []


def test_plan_of_a_refused_rollback_shows_everything_and_exits_with_the_refusal(db_alias):
    migrate(db_alias, "ledger")
    out, err, code = run_command(
        "rollback", "ledger", "0003", "--plan", "--json", database=db_alias
    )
    document = json.loads(out)
    assert code == 7
    assert document["outcome"] == "refused"
    assert [(p["code"], p["migration"]) for p in document["problems"]] == [
        ("irreversible", "ledger.0005_normalise_account_names")
    ]
    assert [m["migration"] for m in document["plan"]] == [
        "ledger.0005_normalise_account_names",
        "ledger.0004_remove_entry_memo",
    ]
    assert "refused; nothing was changed" in err
    assert document["exit_code"] == 7  # as every failure's document says
    assert document["error"].startswith("Rollback ledger 0003 refused; nothing was changed:")


def test_a_refused_rollback_is_refused_in_its_json_as_in_the_audit(db_alias):
    migrate(db_alias, "ledger")
    out, err, code = run_command("rollback", "ledger", "0003", "--json", database=db_alias)
    document = json.loads(out)
    assert (code, document["exit_code"]) == (7, 7)
    assert document["outcome"] == "refused"
    assert document["error"].startswith("Rollback ledger 0003 refused; nothing was changed:")
    (run,) = Run.objects.using(db_alias).filter(command="rollback")
    assert run.outcome == "refused"


def test_a_target_shows_and_unapplies_the_dependants_in_other_apps(db_alias, scenario):
    scenario("rollback_two_apps")
    migrate(db_alias, "scenarios")
    out, _, code = run_command("rollback", "ledger", "0003", "--plan", "--json", database=db_alias)
    assert code == 0
    planned = [m["migration"] for m in json.loads(out)["plan"]]
    assert planned == ["scenarios.0003_widget_weight", "ledger.0004_remove_entry_memo"]
    out, err, code = run_command(
        "rollback", "ledger", "0003", "--json", *SCRIPTED, database=db_alias
    )
    document = json.loads(out)
    assert code == 0, err
    assert document["outcome"] == "succeeded"
    assert document["unapplied"] == planned
    assert "Unapplying scenarios.0003_widget_weight... OK" in err  # progress goes to stderr
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    assert applied(db_alias, "ledger")[-1] == "0003_backfill_email"


# Production: guard, backup, revert, record --------------------------------------------------


def test_production_needs_allow_data_loss_then_backs_up_reverts_and_records(
    db_alias, settings, tmp_path
):
    migrate(db_alias, "ledger", "0004")
    add_ledger_rows(db_alias)
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "ENVIRONMENT": "production",
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    before = table_columns(db_alias, "ledger_entry")

    _, err, code = run_command(
        "rollback", "ledger", "0001", "--noinput", "--yes", database=db_alias
    )
    assert code == 3
    assert "--allow-data-loss" in err
    assert table_columns(db_alias, "ledger_entry") == before
    assert applied(db_alias, "ledger")[-1] == "0004_remove_entry_memo"
    assert not Run.objects.using(db_alias).filter(command="rollback", outcome="succeeded")

    out, err, code = run_command("rollback", "ledger", "0001", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    run = Run.objects.using(db_alias).get(command="rollback", outcome="succeeded")
    assert run.backup_id
    assert f"(run #{run.pk}, backup {run.backup_id})" in out
    columns = table_columns(db_alias, "ledger_entry")
    assert "email" not in columns  # the column 0002 added is dropped
    assert "memo" in columns  # the column 0004 removed is back (empty)
    assert execute(db_alias, "SELECT count(*), min(memo) FROM ledger_entry") == [(3, "")]
    assert applied(db_alias, "ledger") == ["0001_initial"]
    assert hashed(db_alias, "ledger") == ["0001_initial"]
    assert list(run.steps.values_list("name", "direction")) == [
        ("0004_remove_entry_memo", "unapply"),
        ("0003_backfill_email", "unapply"),
        ("0002_entry_email", "unapply"),
    ]
    assert run.details["unapplied"] == [
        "ledger.0004_remove_entry_memo",
        "ledger.0003_backfill_email",
        "ledger.0002_entry_email",
    ]
    history, _, _ = run_command("migrationhistory", database=db_alias)
    assert f"#{run.pk} rollback" in history
    assert f"backup {run.backup_id}" in history


def test_production_on_a_terminal_asks_for_the_database_name(db_alias, settings):
    migrate(db_alias, "ledger", "0002")
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    name = guard.confirmation_word(connections[db_alias])
    args = ("rollback", "ledger", "0001", "--no-backup")

    out, err, code = run_command(*args, database=db_alias, stdin=TTYInput("yes\n"))
    assert (code, err) == (3, "Cancelled; nothing was changed.\n")
    assert f"Type {name!r} to continue: " in out
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]

    out, err, code = run_command(*args, database=db_alias, stdin=TTYInput(f"{name}\n"))
    assert (code, err) == (0, "")
    assert applied(db_alias, "ledger") == ["0001_initial"]
    run = Run.objects.using(db_alias).get(command="rollback", outcome="succeeded")
    assert run.backup_id == ""  # --no-backup, although production backs up by default


def test_migrators_own_tables_are_not_rolled_back(db_alias):
    migrate(db_alias, "ledger", "0001")
    _, err, code = run_command("rollback", "migrator", "zero", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "rollback does not unapply migrator's own migrations (migrator." in err
    assert "migrator.0001_initial)" in err


def test_lock_held_by_another_run_exits_4_and_changes_nothing(db_alias):
    migrate(db_alias, "ledger", "0002")
    with locking.migration_lock(connections[db_alias], timeout=0):
        _, err, code = run_command(
            "rollback", "ledger", "0001", "--lock-timeout", "0", *SCRIPTED, database=db_alias
        )
    assert code == 4
    assert "gave up after 0s" in err
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]


# --last -------------------------------------------------------------------------------------


def test_last_undoes_exactly_the_last_runs_migrations_across_two_apps(db_alias, scenario):
    scenario("rollback_two_apps")
    migrate(db_alias, "ledger", "0002")  # run 1
    migrate(db_alias, "scenarios", "0001")  # run 2
    migrate(db_alias, "scenarios", "0003")  # run 3: ledger 0003-0004, scenarios 0002-0003
    last = Run.objects.using(db_alias).filter(command="safemigrate").first()

    out, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    run = Run.objects.using(db_alias).get(command="rollback")
    order = list(run.steps.values_list("app_label", "name"))
    assert set(order) == {
        ("ledger", "0003_backfill_email"),
        ("ledger", "0004_remove_entry_memo"),
        ("scenarios", "0002_widget_size"),
        ("scenarios", "0003_widget_weight"),
    }
    position = {f"{app}.{name[:4]}": index for index, (app, name) in enumerate(order)}
    assert position["scenarios.0003"] < position["ledger.0004"] < position["ledger.0003"]
    assert position["scenarios.0003"] < position["scenarios.0002"]
    assert run.details["undoes_run"] == last.pk
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert "memo" in table_columns(db_alias, "ledger_entry")
    assert set(table_columns(db_alias, "scenarios_widget")) == {"id", "name", "account_id"}
    assert hashed(db_alias, "scenarios") == ["0001_initial"]
    # Its migrations are no longer applied: a second --last has nothing to undo.
    assert run_command("rollback", "--last", *SCRIPTED, database=db_alias)[0] == (
        "Nothing to roll back.\n"
    )


def test_last_refuses_when_a_later_migration_depends_on_the_runs(db_alias):
    migrate(db_alias, "ledger", "0003")
    run_command("migrate", "ledger", "0004", database=db_alias, verbosity=0)  # outside migrator
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "ledger.0004_remove_entry_memo was applied after run #" in err
    assert "depends on ledger.0003_backfill_email" in err
    assert applied(db_alias, "ledger")[-1] == "0004_remove_entry_memo"


def test_last_unapplies_what_the_run_only_faked_as_fake(db_alias, scenario):
    scenario("basic")
    migrate(db_alias, "scenarios", "0001")
    migrate(db_alias, "scenarios", "0002", "--fake")  # the column was never created
    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert "Unapplied as fake (the run only recorded them): scenarios.0002_widget_size." in out
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    step = Run.objects.using(db_alias).get(command="rollback").steps.get()
    assert (step.name, step.direction, step.fake) == ("0002_widget_size", "unapply", True)


def test_last_unapplies_as_fake_what_a_killed_fake_run_only_recorded(db_alias, scenario):
    """Its steps, rebuilt from the hash records, were real applies: ``rollback --last`` ran
    the reverse and dropped the adopted table with its rows."""
    scenario("basic")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (name) VALUES ('kept')")
    # A table to adopt, rows and all:
    run_command("migrate", "scenarios", "zero", "--fake", database=db_alias, verbosity=0)
    scenario_env = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"}
    argv = ("safemigrate", "scenarios", "0001", "--fake", "--noinput")
    killed_when_paused(start_child(db_alias, *argv, PAUSE_AT="post_migrate", **scenario_env))
    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    assert "Unapplied as fake (the run only recorded them): scenarios.0001_initial." in out
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios") == []
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]


def test_last_without_a_recorded_run_exits_7(db_alias):
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "No safemigrate run is recorded on" in err


def test_last_restore_brings_back_what_an_irreversible_migration_changed(
    db_alias, settings, tmp_path
):
    migrate(db_alias, "ledger", "0004")
    add_ledger_rows(db_alias)
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "BACKUP_BEFORE_MIGRATE": True,
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    migrate(db_alias, "ledger")  # 0005 lowercases the names, irreversibly
    assert execute(db_alias, "SELECT name FROM ledger_account ORDER BY id") == [
        ("alice",),
        ("bob",),
    ]
    last = Run.objects.using(db_alias).filter(command="safemigrate").first()
    assert last.backup_id

    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert code == 7
    assert "ledger.0005_normalise_account_names cannot be unapplied" in err
    assert f"after taking backup {last.backup_id}" in err
    assert "'python manage.py rollback --last --restore' restores it instead." in err

    out, err, code = run_command("rollback", "--last", "--restore", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    assert f"Restored backup {last.backup_id}" in out
    assert execute(db_alias, "SELECT name FROM ledger_account ORDER BY id") == [
        ("Alice",),
        ("BOB",),
    ]
    assert applied(db_alias, "ledger")[-1] == "0004_remove_entry_memo"
    # The refused attempt and the restore are both in the audit (restoring kept it).
    refused, run = reversed(rollback_runs(db_alias))
    assert (refused.outcome, run.outcome) == ("refused", "succeeded")
    assert run.details["restored_backup"] == last.backup_id
    assert run.details["undoes_run"] == last.pk
    # The rollback's record is open around the restore's, both under the one lock.
    restored = Run.objects.using(db_alias).get(command="restore")
    assert run.details["restore_run"] == restored.pk
    assert run.started_at <= restored.started_at <= restored.finished_at <= run.finished_at


def ledger_with_a_restorable_run(alias: str, settings, tmp_path) -> dict[str, str]:
    """Ledger 0005 applied by a run that backed up first, then a big table (a long safety
    backup); returns the environment of children that see the same backups."""
    migrate(alias, "ledger", "0004")
    add_ledger_rows(alias)
    backups = str(tmp_path / "backups")
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_BEFORE_MIGRATE": True, "BACKUP_DIR": backups}
    migrate(alias, "ledger")
    execute(alias, "CREATE TABLE bulk (n integer, note text)")
    execute(
        alias,
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 200000) "
        "INSERT INTO bulk SELECT n, 'row ' || n FROM s",
    )
    return {"MIGRATOR_TEST_BACKUP_DIR": backups, "TMPDIR": str(tmp_path)}


def names(alias: str) -> list[str]:
    return [name for (name,) in execute(alias, "SELECT name FROM ledger_account ORDER BY id")]


def test_last_restore_killed_while_restoring_leaves_its_rollback_run_interrupted(
    db_alias, settings, tmp_path
):
    env = ledger_with_a_restorable_run(db_alias, settings, tmp_path)
    child = start_child(db_alias, "rollback", "--last", "--restore", *SCRIPTED, **env)
    restoring = Run.objects.using(db_alias).filter(command="restore", outcome="running")
    try:
        while not restoring.exists():  # the restore's record opens under the lock
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.01)
        child.kill()
        child.wait(timeout=60)
    finally:
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
    assert run_child(db_alias, "migrationhistory", **env).returncode == 0  # marks the dead
    [killed] = rollback_runs(db_alias)
    assert killed.outcome == "interrupted"  # it was open while the restore ran
    assert Run.objects.using(db_alias).get(command="restore").outcome == "interrupted"
    assert names(db_alias) == ["alice", "bob"]  # wholly old: the restore never committed
    done = run_child(db_alias, "rollback", "--last", "--restore", *SCRIPTED, **env)
    assert done.returncode == 0, done.stderr
    assert names(db_alias) == ["Alice", "BOB"]


def test_two_last_restores_at_once_restore_once(db_alias, settings, tmp_path):
    env = ledger_with_a_restorable_run(db_alias, settings, tmp_path)
    argv = ("rollback", "--last", "--restore", *SCRIPTED, "--lock-timeout", "300")
    children = [start_child(db_alias, *argv, **env) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert names(db_alias) == ["Alice", "BOB"]
    # The second found, under the lock, that the first had undone the run: nothing to do.
    restores = Run.objects.using(db_alias).filter(command="restore")
    assert [run.outcome for run in restores] == ["succeeded"]
    [rolled_back] = rollback_runs(db_alias)
    assert rolled_back.details["restore_run"] == restores.get().pk


def test_last_restore_waits_for_the_lock_only_as_long_as_lock_timeout(db_alias, settings, tmp_path):
    migrate(db_alias, "ledger", "0004")
    add_ledger_rows(db_alias)
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "BACKUP_BEFORE_MIGRATE": True,
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    migrate(db_alias, "ledger")
    with locking.migration_lock(connections[db_alias], timeout=0):
        _, err, code = run_command(
            "rollback", "--last", "--restore", "--lock-timeout", "0", *SCRIPTED, database=db_alias
        )
    assert code == 4
    assert "pid" in err
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert execute(db_alias, "SELECT name FROM ledger_account ORDER BY id") == [
        ("alice",),
        ("bob",),
    ]


def test_last_restore_plan_says_that_everything_since_the_backup_is_replaced(
    db_alias, settings, tmp_path
):
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "BACKUP_BEFORE_MIGRATE": True,
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    migrate(db_alias, "ledger", "0002")
    last = Run.objects.using(db_alias).get(command="safemigrate")
    out, err, code = run_command("rollback", "--last", "--restore", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    assert f"  Restores backup {last.backup_id}." in out
    assert f"replaces all data in {db_alias!r} with its state before run #{last.pk}" in out
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]


def test_last_restore_is_refused_when_that_run_took_no_backup(db_alias):
    migrate(db_alias, "ledger", "0002")
    last = Run.objects.using(db_alias).get(command="safemigrate")
    out, err, code = run_command("rollback", "--last", "--restore", *SCRIPTED, database=db_alias)
    assert code == 7
    assert f"Run #{last.pk} took no backup, so there is nothing to restore" in err
    assert "0002_entry_email" not in out  # the plan of a restore that cannot be: not shown
    assert f"  Undoes safemigrate run #{last.pk} (succeeded)." in out
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]


# A reverse operation that fails -------------------------------------------------------------


def test_a_failing_reverse_exits_5_rolls_its_migration_back_and_says_where_it_stopped(
    db_alias, scenario
):
    scenario("rollback_failing")
    migrate(db_alias, "scenarios")
    out, err, code = run_command("rollback", "scenarios", "0001", *SCRIPTED, database=db_alias)
    assert code == 5
    assert (
        "Failed while unapplying scenarios.0003_reverse_fails (RuntimeError: scenario step "
        "failed on purpose); its transaction was rolled back. "
        "Unapplied: scenarios.0004_widget_weight. "
        "Still applied: scenarios.0003_reverse_fails, scenarios.0002_widget_size. "
        "Fix the cause and run 'rollback scenarios 0001' again to continue."
    ) in err
    # Consistent: 0004 is gone, 0003 is whole (its dropped column came back with the rollback).
    assert applied(db_alias, "scenarios") == [
        "0001_initial",
        "0002_widget_size",
        "0003_reverse_fails",
    ]
    assert hashed(db_alias, "scenarios") == applied(db_alias, "scenarios")
    assert set(table_columns(db_alias, "scenarios_widget")) == {"id", "size", "colour"}
    run = Run.objects.using(db_alias).get(command="rollback")
    assert (run.outcome, run.failed_migration) == ("failed", "scenarios.0003_reverse_fails")
    assert list(run.steps.values_list("name", flat=True)) == ["0004_widget_weight"]
    assert run.details["unapplied"] == ["scenarios.0004_widget_weight"]
    assert run.details["remaining"] == [
        "scenarios.0003_reverse_fails",
        "scenarios.0002_widget_size",
    ]


def test_a_failing_reverse_with_json_reports_what_remains(db_alias, scenario):
    scenario("rollback_failing")
    migrate(db_alias, "scenarios")
    out, err, code = run_command(
        "rollback", "scenarios", "0002", "--json", *SCRIPTED, database=db_alias
    )
    document = json.loads(out)
    assert code == 5
    assert document["outcome"] == "failed"
    assert document["failed_migration"] == "scenarios.0003_reverse_fails"
    assert document["unapplied"] == ["scenarios.0004_widget_weight"]
    assert document["remaining"] == ["scenarios.0003_reverse_fails"]


# rollback --sql ------------------------------------------------------------------------------


def test_rollback_sql_prints_the_backward_sql_and_changes_nothing(db_alias):
    assert run_command("safemigrate", "ledger", "0004", "--no-backup", database=db_alias)[2] == 0
    assert run_command("safemigrate", "ledger", "--no-backup", database=db_alias)[2] == 0
    columns, runs = table_columns(db_alias, "ledger_entry"), Run.objects.using(db_alias).count()

    out, err, code = run_command("rollback", "ledger", "0002", "--sql", database=db_alias)

    assert (code, err) == (0, "")
    headings = [line for line in out.splitlines() if line.startswith("-- ledger.")]
    assert headings == [
        "-- ledger.0005_normalise_account_names",
        "-- ledger.0004_remove_entry_memo",
        "-- ledger.0003_backfill_email",
    ]
    irreversible = out.index("-- No SQL: Raw Python operation: irreversible")
    assert out.index(headings[0]) < irreversible < out.index(headings[1])
    memo_back = out[out.index(headings[1]) : out.index(headings[2])]
    assert '"memo"' in memo_back  # the column the reverse of RemoveField adds back
    python = out.index("-- No SQL: Raw Python operation: Python code")
    assert out.index(headings[2]) < python

    out, err, code = run_command("rollback", "--last", "--sql", "--json", database=db_alias)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "sql": [
            {
                "migration": "ledger.0005_normalise_account_names",
                "statements": [],
                "no_sql": ["Raw Python operation: irreversible"],
            }
        ]
    }
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert table_columns(db_alias, "ledger_entry") == columns
    assert Run.objects.using(db_alias).count() == runs
    assert run_command("rollback", "--last", "--sql", "--restore", database=db_alias)[1:] == (
        "--sql shows the reverse operations; --restore runs none.\n",
        1,
    )


def test_a_development_rollback_shows_the_data_it_destroys_as_its_plan_does(
    db_alias, scenario, settings
):
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "development"}
    scenario("basic")
    migrate(db_alias, "scenarios")
    execute(
        db_alias,
        "INSERT INTO scenarios_widget (name, size, colour, weight) VALUES ('w', 0, '', 1)",
    )

    def destroyed(out: str) -> list[str]:
        lines = out.splitlines()
        start = lines.index("Data the rollback destroys:")
        return lines[start : start + 2]

    planned, _, code = run_command("rollback", "scenarios", "0003", "--plan", database=db_alias)
    assert code == 0
    out, err, code = run_command("rollback", "scenarios", "0003", database=db_alias)
    assert (code, err) == (0, "")
    assert destroyed(out) == destroyed(planned)
    assert destroyed(out)[1] == (
        "  - scenarios.0004_widget_weight: column weight of scenarios_widget (1 row)"
    )
    assert out.index("Data the rollback destroys:") < out.index("Unapplying ")


def test_last_claims_no_risk_for_what_it_unapplies_as_fake(db_alias, scenario):
    """Undoing a faked CreateModel runs nothing: the plan said 'ML102 danger: Drops table
    scenarios_widget (1 rows): its rows are lost', then kept them."""
    scenario("basic")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (name) VALUES ('kept')")
    run_command("migrate", "scenarios", "zero", "--fake", database=db_alias, verbosity=0)
    migrate(db_alias, "scenarios", "0001", "--fake")  # adopts the table

    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)

    assert (code, err) == (0, "")
    assert "  scenarios.0001_initial [before_deploy: undo wait until the old code is back]\n" in out
    assert "    Undo Create model Ledger\n    Undo Create model Widget\n" in out
    assert "its rows are lost" not in out
    assert "Hints, one per app and code:" not in out  # no finding at all
    out, err, code = run_command("rollback", "--last", "--plan", "--json", database=db_alias)
    [planned] = json.loads(out)["plan"]
    assert [operation["findings"] for operation in planned["operations"]] == [[], []]
    out, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    assert "Risks in this plan" not in out
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]
