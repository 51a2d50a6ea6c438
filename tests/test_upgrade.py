"""Databases an older migrator left: its records read right, its runs undone right.

A migrator older than its migration 0004 recorded no ``fake`` in the hash records, and
rebuilt a killed run's steps as real applies. Its runs and records are written here as it
wrote them (plain SQL, on migrator's tables at ``migrator.0003``), then the current
migrator takes over, as it does after an upgrade.
"""

import json

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from migrator import integrity
from migrator.models import MigrationHash, Run, RunStep
from tests.utils import applied, execute, run_command, table_columns

# Flags a deploy script passes when data loss is not what the test is about.
SCRIPTED = ("--noinput", "--yes", "--allow-data-loss")
FAKE_RECORDED_SINCE = "0004_migrationhash_fake_run_ordering"
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


def upgraded_after_an_old_run(alias: str, scenario, flag: str, *, rebuilt: bool) -> Run:
    """An older migrator's run with ``flag`` adopting a table, killed (``rebuilt``: its
    steps then rebuilt as that migrator did, as real applies), then the upgrade."""
    scenario("basic")
    at_migrator(alias, "0003")
    adoptable_widgets(alias)
    run = old_run(alias, flag)
    if rebuilt:
        rebuilt_as_real(alias, run)
    upgraded(alias)
    return run


@pytest.mark.parametrize("rebuilt", [False, True], ids=["killed", "rebuilt-as-real"])
def test_a_killed_fake_run_of_an_older_migrator_is_unapplied_as_fake(db_alias, scenario, rebuilt):
    """Its hash record said nothing of --fake: ``rollback --last`` ran the reverse and
    dropped the adopted table with its rows."""
    run = upgraded_after_an_old_run(db_alias, scenario, "--fake", rebuilt=rebuilt)

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
    run = upgraded_after_an_old_run(db_alias, scenario, "--fake-initial", rebuilt=rebuilt)

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


def killed_widget_size_run(alias: str, own: str) -> Run:
    """A run that applied scenarios.0002_widget_size and was killed (kill -9) before its
    end, on migrator's tables at ``own``: written as the migrator of that schema writes."""
    call_command("migrate", "scenarios", "0002", database=alias, verbosity=0)
    run = Run.objects.using(alias).create(
        command="safemigrate",
        arguments={"app_label": "scenarios", "fake": False, "fake_initial": False},
        database="default",
        environment="development",
        actor="deploy",
        host="old-release",
        pid=1,
    )
    columns = ["app_label", "name", "checksum", "applied_at", "run_id"]
    values = ["scenarios", "0002_widget_size", checksum("scenarios", "0002_widget_size")]
    values += [timezone.now(), run.pk]
    if own >= "0002":
        columns.append("duration")
        values.append(0.01)
    if own >= "0004":  # written by a migrator that records fake, after 0004's own record
        columns.append("fake")
        values.append(False)
        execute(
            alias,
            "INSERT INTO migrator_migrationhash (app_label, name, checksum, applied_at, fake) "
            "VALUES ('migrator', %s, %s, %s, false)",
            [FAKE_RECORDED_SINCE, checksum("migrator", FAKE_RECORDED_SINCE), timezone.now()],
        )
    execute(
        alias,
        f"INSERT INTO migrator_migrationhash ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})",
        values,
    )
    return run


def own_schema(alias: str) -> tuple[list[str], dict[str, list[str]]]:
    """migrator's applied migrations and its tables' columns."""
    tables = ["migrator_run", "migrator_runstep", "migrator_migrationhash"]
    return applied(alias, "migrator"), {table: table_columns(alias, table) for table in tables}


@pytest.mark.parametrize("own", ["0001", "0002", "0003", "0004"])
def test_read_only_commands_show_a_killed_run_on_migrators_older_tables(db_alias, scenario, own):
    """They marked it through the ORM, which selected columns of migrator's later
    migrations: 'no such column' (SQLite), a traceback (PostgreSQL), no --json document."""
    scenario("basic")
    at_migrator(db_alias, own)
    run = killed_widget_size_run(db_alias, own)
    schema = own_schema(db_alias)

    out, err, code = run_command("migrationhistory", "--json", database=db_alias)
    assert (code, err) == (0, "")
    [shown] = json.loads(out)["runs"]
    assert (shown["id"], shown["outcome"]) == (run.pk, "interrupted")
    assert shown["migrations"] == [
        {
            "migration": "scenarios.0002_widget_size",
            "direction": "apply",
            "fake": False,
            "duration": 0.01 if own >= "0002" else None,
        }
    ]
    for command in (
        ("migrationstatus",),
        ("migrationstatus", "--json"),
        ("migrationhistory",),
        ("rollback", "--last", "--plan"),
        ("rollback", "--last", "--plan", "--json"),
        ("rollback", "--last", "--sql"),
    ):
        out, err, code = run_command(*command, database=db_alias)
        assert (code, err) == (0, ""), command
    out, _, _ = run_command("rollback", "--last", "--plan", database=db_alias)
    assert f"Undoes safemigrate run #{run.pk} (interrupted)." in out
    assert "  scenarios.0002_widget_size" in out
    assert own_schema(db_alias) == schema  # read-only: migrator's own migrations wait

    out, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)

    assert (code, err) == (0, "")
    assert "Unapplying scenarios.0002_widget_size... OK" in out
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert applied(db_alias, "migrator")[-1] == "0005_migrationhash_fake_unknown"


@pytest.mark.parametrize("own", ["0003", "0004"])
def test_a_killed_fake_initial_run_is_refused_before_migrators_own_migrations_too(
    db_alias, scenario, own
):
    """``rollback --last --plan`` reads what migrator.0005 will say: at 0004, its rule (the
    records before 0004's own say nothing), not the False 0004 filled in."""
    scenario("basic")
    at_migrator(db_alias, "0003")
    adoptable_widgets(db_alias)
    run = old_run(db_alias, "--fake-initial")
    if own == "0004":  # a migrator of that schema marked the run, its steps as the hash says
        rebuilt_as_real(db_alias, run)
        at_migrator(db_alias, "0004")
        execute(
            db_alias,
            "INSERT INTO migrator_migrationhash (app_label, name, checksum, applied_at, fake) "
            "VALUES ('migrator', %s, %s, %s, false)",
            [FAKE_RECORDED_SINCE, checksum("migrator", FAKE_RECORDED_SINCE), timezone.now()],
        )
    schema = own_schema(db_alias)
    refused = f"  - Run #{run.pk} ran with --fake-initial, and a migrator older than"

    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)

    assert (code, own_schema(db_alias)) == (7, schema)
    assert refused in err
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert (code, own_schema(db_alias)) == (7, schema)  # refused before the lock
    assert refused in err
    upgraded(db_alias)
    _, err, code = run_command("rollback", "--last", *SCRIPTED, database=db_alias)
    assert code == 7
    assert refused in err
    assert execute(db_alias, "SELECT name FROM scenarios_widget") == [("kept",)]


def test_migrators_migrations_an_older_node_pruned_are_recorded_again(db_alias, scenario):
    """A node of an older release refused to run beside migrator.0004 and 0005 (their
    files missing there) and said 'safemigrate migrator --prune': their records went,
    their column stayed. Every later run failed making that column again: 'column "fake"
    ... already exists', a traceback."""
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0001", database=db_alias)[2] == 0
    newer = [FAKE_RECORDED_SINCE, "0005_migrationhash_fake_unknown"]
    MigrationRecorder(connections[db_alias]).migration_qs.filter(
        app="migrator", name__in=newer
    ).delete()
    MigrationHash.objects.using(db_alias).filter(app_label="migrator", name__in=newer).delete()

    out, err, code = run_command("safemigrate", "scenarios", "0002", database=db_alias)

    assert (code, err) == (0, "")
    assert f"  Applying migrator.{FAKE_RECORDED_SINCE}... FAKED" in out
    assert "  Applying migrator.0005_migrationhash_fake_unknown... OK" in out
    assert applied(db_alias, "migrator")[-2:] == newer
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    records = MigrationHash.objects.using(db_alias).filter(app_label="migrator", name__in=newer)
    faked = [(newer[0], True), (newer[1], False)]  # 0004's column was there; 0005 ran
    assert sorted(records.values_list("name", "fake")) == faked
    run = Run.objects.using(db_alias).order_by("-id").first()  # recorded as it was done
    own = run.steps.filter(app_label="migrator").order_by("id").values_list("name", "fake")
    assert list(own) == faked
