"""Databases an older migrator left: its records read right, its runs undone right.

A migrator older than its migration 0004 recorded no ``fake`` in the hash records, and
rebuilt a killed run's steps as real applies. Its runs and records are written here as it
wrote them (plain SQL, on migrator's tables at ``migrator.0003``), then the current
migrator takes over, as it does after an upgrade.
"""

import pytest
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from migrator import integrity
from migrator.models import MigrationHash, Run, RunStep
from tests.utils import applied, execute, run_command

# Flags a deploy script passes when data loss is not what the test is about.
SCRIPTED = ("--noinput", "--yes", "--allow-data-loss")
OLD_HASH = (
    "INSERT INTO migrator_migrationhash (app_label, name, checksum, applied_at, duration, run_id) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


def checksum(app_label: str, name: str) -> str:
    """The hash of a migration's file, as migrator records it."""
    return integrity.migration_hash(MigrationLoader(None).get_migration(app_label, name))


def at_migrator(alias: str, name: str) -> None:
    """migrator's tables as far as its migration ``name``, as an older release left them."""
    call_command("migrate", "migrator", name, database=alias, verbosity=0)


def adoptable_widgets(alias: str) -> None:
    """The table of scenarios.0001_initial with a row, the migration not recorded."""
    call_command("migrate", "scenarios", "0001", database=alias, verbosity=0)
    execute(alias, "INSERT INTO scenarios_widget (name) VALUES ('kept')")
    call_command("migrate", "scenarios", "zero", "--fake", database=alias, verbosity=0)


def old_run(alias: str, flag: str, *, outcome: str = "running", steps: bool = False) -> Run:
    """What an older migrator left of ``safemigrate scenarios 0001 <flag>``, which faked the
    migration: killed after its apply committed (``running``; ``steps``: rebuilt by that
    migrator as real applies, ``interrupted``), or ``succeeded`` with its steps."""
    run = Run.objects.using(alias).create(
        command="safemigrate",
        arguments={
            "app_label": "scenarios",
            "migration_name": "0001",
            "fake": flag == "--fake",
            "fake_initial": flag == "--fake-initial",
        },
        database="default",
        environment="development",
        actor="deploy",
        host="old-release",
        pid=1,
        outcome=outcome,
    )
    call_command("migrate", "scenarios", "0001", "--fake", database=alias, verbosity=0)
    execute(
        alias,
        OLD_HASH,
        [
            "scenarios",
            "0001_initial",
            checksum("scenarios", "0001_initial"),
            timezone.now(),
            0.01,
            run.pk,
        ],
    )
    if steps:
        RunStep.objects.using(alias).create(
            run=run, app_label="scenarios", name="0001_initial", direction="apply", fake=True
        )
    return run


def rebuilt_as_real(alias: str, run: Run) -> None:
    """The older migrator found the run killed: its steps rebuilt as real applies."""
    RunStep.objects.using(alias).create(
        run=run, app_label="scenarios", name="0001_initial", direction="apply", fake=False
    )
    Run.objects.using(alias).filter(pk=run.pk).update(
        outcome="interrupted", error="The process ended without finishing the run (killed or lost)."
    )


def upgraded(alias: str) -> None:
    """The first run of the current migrator: its own migrations, the killed run marked."""
    out, err, code = run_command("safemigrate", "scenarios", "0001", "--noinput", database=alias)
    assert code == 0, err


@pytest.mark.parametrize("rebuilt", [False, True], ids=["killed", "rebuilt-as-real"])
def test_a_killed_fake_run_of_an_older_migrator_is_unapplied_as_fake(db_alias, scenario, rebuilt):
    """Its hash record said nothing of --fake: ``rollback --last`` ran the reverse and
    dropped the adopted table with its rows."""
    scenario("basic")
    at_migrator(db_alias, "0003")
    adoptable_widgets(db_alias)
    run = old_run(db_alias, "--fake")
    if rebuilt:
        rebuilt_as_real(db_alias, run)
    upgraded(db_alias)

    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    assert f"Undoes safemigrate run #{run.pk} (interrupted)." in out
    assert "Unapplied as fake (the run only recorded them): scenarios.0001_initial." in out
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios") == []
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]


@pytest.mark.parametrize("rebuilt", [False, True], ids=["killed", "rebuilt-as-real"])
def test_a_killed_fake_initial_run_of_an_older_migrator_is_refused_by_last(
    db_alias, scenario, rebuilt
):
    """Nothing says whether it faked the migration (its table was there) or applied it:
    its reverse is run by no ``--last``."""
    scenario("basic")
    at_migrator(db_alias, "0003")
    adoptable_widgets(db_alias)
    run = old_run(db_alias, "--fake-initial")
    if rebuilt:
        rebuilt_as_real(db_alias, run)
    upgraded(db_alias)

    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)

    assert code == 7
    assert err == (
        "Rollback --last refused; nothing was changed:\n"
        f"  - Run #{run.pk} ran with --fake-initial, and a migrator older than its migration "
        "0004 recorded it: nothing says whether it only faked scenarios.0001_initial, so "
        "--last runs no reverse that could drop a table the run adopted; if the run created "
        "their tables, roll back to an explicit target (rollback <app_label> "
        "<migration_name>), if they were there before it, unrecord them ('python manage.py "
        "migrate <app_label> <migration_name> --fake').\n"
    )
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]
    out, _, code = run_command("rollback", "--last", "--plan", "--json", database=db_alias)
    assert code == 7
    assert '"code": "fake_unknown"' in out


def test_a_fake_initial_run_an_older_migrator_finished_is_undone_by_its_steps(db_alias, scenario):
    """Its own steps, written as it ended, say what it faked."""
    scenario("basic")
    at_migrator(db_alias, "0003")
    adoptable_widgets(db_alias)
    old_run(db_alias, "--fake-initial", outcome="succeeded", steps=True)
    upgraded(db_alias)

    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)

    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios") == []
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]


def test_hash_records_of_an_older_migrator_say_fake_is_not_known(db_alias):
    """migrator.0004 filled in False for them; those written after its own record keep
    theirs, and an older migrator's insert (no ``fake``) works from then on."""
    at_migrator(db_alias, "0003")
    now = timezone.now()
    execute(db_alias, OLD_HASH, ["older", "0001_initial", "sha256:1:0", now, None, None])
    at_migrator(db_alias, "0004")
    written = (
        "INSERT INTO migrator_migrationhash (app_label, name, checksum, applied_at, fake) "
        "VALUES (%s, %s, %s, %s, %s)"
    )
    own = "0004_migrationhash_fake_run_ordering"
    execute(db_alias, written, ["migrator", own, checksum("migrator", own), now, False])
    execute(db_alias, written, ["newer", "0001_initial", "sha256:1:0", now, False])
    execute(db_alias, written, ["newer", "0002_faked", "sha256:1:0", now, True])

    assert run_command("safemigrate", "migrator", "--noinput", database=db_alias)[2] == 0
    execute(db_alias, OLD_HASH, ["older", "0002_later", "sha256:1:0", now, None, None])

    fakes = {
        f"{app_label}.{name}": fake
        for app_label, name, fake in MigrationHash.objects.using(db_alias)
        .exclude(app_label="migrator")
        .values_list("app_label", "name", "fake")
    }
    assert fakes == {
        "older.0001_initial": None,
        "newer.0001_initial": False,
        "newer.0002_faked": True,
        "older.0002_later": None,
    }
