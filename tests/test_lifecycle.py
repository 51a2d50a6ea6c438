"""One run life cycle: the record, the lock, migrator's own tables, dead runs, --json.

Every flow that changes a database goes through ``migrator.lifecycle``; these tests hold
it to the failure paths that each flow used to write by hand.
"""

import json
from contextlib import contextmanager

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from migrator import audit, runner, signals
from migrator.exceptions import ConfirmationRequired
from migrator.models import Run
from migrator.types import RunOptions, migration_label
from tests.utils import (
    applied,
    killed_when_paused,
    run_child,
    run_command,
    start_child,
)

BASIC = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"}


def test_safemigrate_after_migrate_applied_part_of_migrators_own_migrations(db_alias):
    call_command("migrate", "migrator", "0001", database=db_alias, verbosity=0)
    out, err, code = run_command("safemigrate", database=db_alias, interactive=False)
    assert (err, code) == ("", 0)
    leaf = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes("migrator")
    assert leaf == [("migrator", applied(db_alias, "migrator")[-1])]
    assert Permission.objects.using(db_alias).exists()
    assert ContentType.objects.using(db_alias).filter(app_label="ledger").exists()
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 0
    assert Run.objects.using(db_alias).get(command="safemigrate").outcome == "succeeded"


def own_last_migration_pending(alias: str, *target: str) -> str:
    """A database that the release of migrator before its last migration migrated (to
    ``target``): that migration is the only one pending of migrator's own. Its label."""
    assert run_command("safemigrate", *target, database=alias)[2] == 0
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    [leaf] = graph.leaf_nodes("migrator")
    [previous] = graph.node_map[leaf].parents
    call_command("migrate", "migrator", previous.key[1], database=alias, verbosity=0)
    return migration_label(leaf)


@pytest.mark.parametrize("target", [(), ("ledger",)], ids=["no-target", "app-target"])
def test_migrators_own_pending_migration_is_planned_checked_and_guarded_alone(
    db_alias, settings, target
):
    own = own_last_migration_pending(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}

    out, err, code = run_command("safemigrate", *target, "--plan", database=db_alias)
    assert (err, code) == ("", 0)
    assert f"\n  {own} [before_deploy]\n" in out
    assert "No planned migration operations." not in out
    _, err, code = run_command("safemigrate", *target, "--check", database=db_alias)
    assert (err, code) == (f"1 migration(s) not applied to {db_alias!r}.\n", 1)
    out, err, code = run_command("safemigrate", *target, "--json", "--noinput", database=db_alias)
    document = json.loads(out)
    assert (code, document["outcome"], document["run_id"]) == (3, "refused", None)
    assert [planned["migration"] for planned in document["plan"]] == [own]
    assert "pass --yes to confirm." in err
    assert own.split(".")[1] not in applied(db_alias, "migrator")


def test_migrators_own_pending_migration_is_never_held_back_by_the_before_deploy_stage(
    db_alias, settings
):
    """Marked after_deploy (MIGRATOR["STAGE_OVERRIDES"]), it is applied first all the same:
    the run needs migrator's tables current to record itself."""
    own = own_last_migration_pending(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "STAGE_OVERRIDES": {own: "after_deploy"}}

    out, err, code = run_command(
        "safemigrate", "--plan", "--json", stage="before-deploy", database=db_alias
    )

    document = json.loads(out)
    assert (code, err) == (0, "")
    assert [planned["migration"] for planned in document["plan"]] == [own]
    assert document["held_back"] == []


@pytest.mark.parametrize(
    ("deployed", "target", "steps"),
    [
        ((), (), []),
        (("ledger", "0003"), ("ledger", "0003"), []),
        (("ledger", "0003"), ("ledger", "0004"), ["ledger.0004_remove_entry_memo"]),
    ],
    ids=["alone", "alone-app-target", "with-the-projects"],
)
def test_migrators_own_pending_migration_is_applied_in_a_recorded_run(
    db_alias, deployed, target, steps
):
    own = own_last_migration_pending(db_alias, *deployed)
    [deploy] = Run.objects.using(db_alias).all()

    out, err, code = run_command("safemigrate", *target, "--json", database=db_alias)

    document = json.loads(out)
    run = Run.objects.using(db_alias).latest("id")
    assert (code, document["outcome"], document["run_id"]) == (0, "succeeded", run.pk)
    assert document["own_first"] == [own]
    assert [f"{step.app_label}.{step.name}" for step in run.steps.all()] == [own, *steps]
    assert run.steps.get(app_label="migrator").duration > 0
    app_label, name = own.split(".")
    assert run.hashes.filter(app_label=app_label, name=name).exists()
    out, err, code = run_command("safemigrate", *target, database=db_alias)
    assert (out, err, code) == ("No migrations to apply.\n", "", 0)
    assert Run.objects.using(db_alias).count() == 2
    # migrator's own are never rolled back: --last undoes the last run that applied others.
    out, _, _ = run_command("rollback", "--last", "--plan", "--json", database=db_alias)
    document = json.loads(out)
    assert document["source_run_id"] == (run if steps else deploy).pk
    assert own not in [planned["migration"] for planned in document["plan"]]


def own_tables(alias: str) -> list[str]:
    return [name for name in connections[alias].introspection.table_names() if "migrator_" in name]


def drop_own_tables(alias: str) -> None:
    """As ``migrate --fake`` adopting a database leaves it: migrator's migrations recorded
    as applied, none of its tables made."""
    with connections[alias].schema_editor() as editor:
        for table in sorted(own_tables(alias), key=lambda name: name == "migrator_run"):
            editor.execute(f"DROP TABLE {editor.quote_name(table)}")  # migrator_run last


@pytest.mark.parametrize(
    ("pending", "command"),
    [
        (False, ("safemigrate",)),
        (True, ("safemigrate",)),
        (False, ("verifymigrations", "--baseline")),
    ],
    ids=["nothing-to-apply", "pending", "baseline"],
)
def test_migrators_migrations_faked_without_its_tables_are_made_by_the_next_run(
    db_alias, pending, command
):
    if pending:
        call_command("migrate", "migrator", "--fake", database=db_alias, verbosity=0)
    else:
        call_command("migrate", database=db_alias, verbosity=0)
        drop_own_tables(db_alias)
    assert own_tables(db_alias) == []

    out, err, code = run_command(*command, database=db_alias)

    assert (code, err) == (0, ""), out
    said = (
        f"migrator's migrations are recorded as applied on {db_alias!r}, but its tables are "
        "missing (migrate --fake?): making them."
    )
    assert said in out or command[0] == "verifymigrations"  # its progress: at -v 2
    assert sorted(own_tables(db_alias)) == [
        "migrator_batchprogress",
        "migrator_migrationhash",
        "migrator_run",
        "migrator_runstep",
    ]
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    assert out.endswith("No migrations to apply.\n")


def test_some_of_migrators_tables_missing_under_its_applied_migrations_is_exit_2(db_alias):
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    with connections[db_alias].schema_editor() as editor:
        editor.execute("DROP TABLE migrator_batchprogress")

    _, err, code = run_command("safemigrate", database=db_alias, interactive=False)

    assert (code, err) == (
        2,
        f"migrator's migrations are recorded as applied on {db_alias!r}, but its tables "
        "migrator_batchprogress are missing; drop its other tables and run 'python manage.py "
        "migrate migrator zero --fake', then run again.\n",
    )


def test_a_run_killed_inside_post_migrate_is_marked_and_completed_by_the_next(db_alias, scenario):
    assert run_command("safemigrate", database=db_alias)[2] == 0  # all but the scenarios
    ledger = Permission.objects.using(db_alias).filter(content_type__app_label="ledger")
    ledger.delete()  # post_migrate makes them again: the marker of a completed one
    scenario("basic")
    killed_when_paused(
        start_child(db_alias, "safemigrate", "--noinput", PAUSE_AT="post_migrate", **BASIC)
    )
    assert not ledger.exists()
    # Looking is enough to find the dead run: its lock is free.
    out, _, code = run_command("migrationhistory", "--json", database=db_alias)
    assert [run["outcome"] for run in json.loads(out)["runs"]] == ["interrupted", "succeeded"]
    done = run_child(db_alias, "safemigrate", "--noinput", **BASIC)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "No migrations to apply.\n"
    assert ledger.exists()
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 0
    killed = Run.objects.using(db_alias).get(outcome="interrupted")
    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert (err, code) == ("", 0)
    assert f"Undoes safemigrate run #{killed.pk} (interrupted)." in out
    assert "scenarios.0004_widget_weight" in out
    assert "ledger.0" not in out


def test_a_killed_runs_rebuilt_steps_keep_a_squash_in_its_place_with_its_duration(db_alias):
    """Rebuilt from the hash records: the squash it applied comes before the migration that
    depends on it, timed, as the run applied them (not re-recorded at the end, untimed)."""
    killed_when_paused(
        start_child(
            db_alias,
            "safemigrate",
            "scenarios",
            "--noinput",
            PAUSE_AT="post_migrate",
            MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.squashed_then_third",
        )
    )
    out, _, code = run_command("migrationhistory", "--json", database=db_alias)  # marks it
    assert [run["outcome"] for run in json.loads(out)["runs"]] == ["interrupted"]
    killed = Run.objects.using(db_alias).get()
    steps = [
        (step.name, step.duration is not None)
        for step in killed.steps.filter(app_label="scenarios").order_by("id")
    ]
    assert steps == [("0001_squashed_0002_second", True), ("0003_third", True)]


def test_a_plan_grown_between_the_confirmation_and_the_lock_is_refused(
    db_alias, scenario, settings
):
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    answered = []

    def confirm_while_another_host_rolls_back(question: str, expected: str) -> bool:
        rolled = run_child(
            db_alias,
            "rollback",
            "scenarios",
            "0001",
            "--noinput",
            "--yes",
            "--no-backup",
            "--allow-data-loss",
            **BASIC,
        )
        answered.append(rolled.returncode)
        return True

    with pytest.raises(ConfirmationRequired, match="The plan changed while waiting for the lock"):
        runner.safemigrate(
            "scenarios",
            "0003",
            options=RunOptions(database=db_alias, backup=False),
            confirm=confirm_while_another_host_rolls_back,
        )
    assert answered == [0]
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    refused = Run.objects.using(db_alias).filter(command="safemigrate").latest("id")
    assert refused.outcome == "refused"


@pytest.mark.parametrize(
    ("args", "code", "outcome", "named"),
    [
        (("safemigrate", "scenarios"), 5, "failed", "scenarios.0002_breaks"),
        (("restore", "20990101-000000-nope", "--yes"), 6, "failed", "20990101-000000-nope"),
        # refused by validation, as the audit records it
        (("rollback", "scenarios", "0009"), 7, "refused", "0009"),
    ],
    ids=["migration-fails", "unknown-backup", "unknown-target"],
)
def test_json_failures_write_one_document_naming_what_failed(
    db_alias, scenario, args, code, outcome, named
):
    scenario("failing")
    out, err, returncode = run_command(*args, "--json", database=db_alias)
    document = json.loads(out)  # one document, nothing else on stdout
    assert returncode == code
    assert (document["exit_code"], document["outcome"]) == (code, outcome)
    assert named in document["error"]
    assert document["error"] in err


def test_refusals_are_opened_and_closed_by_the_one_run_record(db_alias, settings, monkeypatch):
    """The guard's refusals go through ``audit.recorded``, with the same content as before:
    command, outcome ``refused``, the error, closed; one ``refused`` signal, no start."""
    assert run_command("safemigrate", "ledger", "0004", database=db_alias)[2] == 0
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    through, events = [], []
    recorded = audit.recorded

    @contextmanager
    def watched(*args, **kwargs):
        with recorded(*args, **kwargs) as run:
            through.append(run.pk)
            yield run

    def heard(sender, signal, **kwargs):
        events.append(signal)

    monkeypatch.setattr(audit, "recorded", watched)
    for signal in (signals.run_started, signals.run_refused):
        signal.connect(heard)
    try:
        assert run_command("safemigrate", "--noinput", database=db_alias)[2] == 3
        assert run_command("rollback", "ledger", "0003", "--noinput", database=db_alias)[2] == 3
    finally:
        for signal in (signals.run_started, signals.run_refused):
            signal.disconnect(heard)
    refused = list(Run.objects.using(db_alias).filter(outcome="refused").order_by("id"))
    assert [run.pk for run in refused] == through
    assert [(run.command, run.finished_at is not None) for run in refused] == [
        ("safemigrate", True),
        ("rollback", True),
    ]
    assert "No terminal to ask on; pass --yes to confirm." in refused[0].error
    assert "No terminal to ask on; pass --yes to confirm." in refused[1].error
    assert events == [signals.run_refused, signals.run_refused]


def test_a_killed_run_ends_at_its_last_known_activity_not_when_it_was_found(db_alias, scenario):
    scenario("basic")
    killed_when_paused(
        start_child(
            db_alias, "safemigrate", "--noinput", PAUSE_AT="scenarios.0003_slow_step", **BASIC
        )
    )
    assert run_command("migrationhistory", database=db_alias)[2] == 0  # finds it
    killed = Run.objects.using(db_alias).get()
    last = killed.hashes.get(app_label="scenarios", name="0002_widget_size")
    assert (killed.outcome, killed.finished_at) == ("interrupted", last.applied_at)

    # Killed in its first reverse: it did nothing known, so it ends where it started.
    assert run_command("safemigrate", "scenarios", "0003", database=db_alias)[2] == 0
    killed_when_paused(
        start_child(
            db_alias,
            "rollback",
            "scenarios",
            "0002",
            "--noinput",
            "--allow-data-loss",
            PAUSE_AT="scenarios.0003_slow_step:reverse",
            **BASIC,
        )
    )
    out, _, _ = run_command("migrationhistory", "--json", "--limit", "1", database=db_alias)
    [rollback] = json.loads(out)["runs"]
    assert (rollback["command"], rollback["outcome"]) == ("rollback", "interrupted")
    assert (rollback["finished_at"], rollback["duration"]) == (rollback["started_at"], 0)
