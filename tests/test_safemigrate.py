import json
import os
import re
import signal
import sqlite3
import subprocess

import pytest
from django.db import connections
from django.db.models.signals import post_migrate
from django.test.utils import CaptureQueriesContext

from migrator.models import MigrationHash, Run
from tests.test_children import wait_until
from tests.utils import (
    ROOT,
    applied,
    child_env,
    django_admin,
    execute,
    own_migration_labels,
    own_migrations,
    raw_connection,
    run_child,
    run_command,
    start_child,
    table_columns,
    wait_for_line,
)


def test_migrates_the_demo_and_then_has_nothing_to_do(db_alias):
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    assert "Applying ledger.0005_normalise_account_names... OK" in out
    assert run_command("safemigrate", database=db_alias) == ("No migrations to apply.\n", "", 0)
    assert run_command("migrate", "--check", database=db_alias)[2] == 0


def test_migrate_signal_lines_at_verbosity_2_are_lines_of_their_own(db_alias):
    """Django's signal senders write without a line ending: each is a progress line."""
    out, err, code = run_command("safemigrate", database=db_alias, verbosity=2)

    assert (code, err) == (0, "")
    for phase in ("pre", "post"):
        assert f"Running {phase}-migrate handlers for application ledger" in out.splitlines()


def test_records_the_run_hashes_content_types_and_permissions(db_alias):
    run_command("safemigrate", database=db_alias)
    run = Run.objects.using(db_alias).get()
    assert run.outcome == Run.Outcome.SUCCEEDED
    steps = list(run.steps.values_list("app_label", "name", "duration"))
    assert ("ledger", "0005_normalise_account_names") in [(a, n) for a, n, _ in steps]
    assert all(duration is not None and duration >= 0 for *_, duration in steps)
    hashed = set(MigrationHash.objects.using(db_alias).values_list("app_label", "name"))
    with connections[db_alias].cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        assert set(cursor.fetchall()) == hashed
        cursor.execute(
            "SELECT count(*) FROM auth_permission p JOIN django_content_type c "
            "ON p.content_type_id = c.id WHERE c.app_label = 'ledger'"
        )
        assert cursor.fetchone()[0] == 8
        # migrator's own tables, created first on this fresh database, get theirs too
        cursor.execute("SELECT model FROM django_content_type WHERE app_label = 'migrator'")
        assert {row[0] for row in cursor.fetchall()} == {
            "run",
            "runstep",
            "migrationhash",
            "batchprogress",
        }
    assert {step[1] for step in steps} >= {"0001_initial"}


def test_per_migration_records_stay_out_of_debugs_query_log(db_alias):
    """With DEBUG on, migrator's hash and step rows cost no logged (on SQLite, re-quoted) query."""
    with CaptureQueriesContext(connections[db_alias]) as logged:
        assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    writes = [q["sql"] for q in logged if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    # Rows written into the records (not a SQLite table rebuild's copy out of one).
    records = re.compile(
        r'(INSERT INTO|UPDATE|DELETE FROM) "?(migrator_migrationhash|migrator_runstep)\b'
    )
    assert [sql for sql in writes if records.match(sql)] == []
    assert any("django_migrations" in sql for sql in writes)  # Django's own are still logged
    hashed = MigrationHash.objects.using(db_alias).filter(app_label="ledger").count()
    steps = Run.objects.using(db_alias).get().steps.filter(app_label="ledger").count()
    assert hashed == steps == len(applied(db_alias, "ledger")) > 0


def test_a_plan_that_needs_migrators_models_sees_them_on_a_fresh_database(db_alias, scenario):
    scenario("needs_migrator")
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert (code, err) == (0, "")
    assert "Applying scenarios.0001_initial... OK" in out
    assert "run_id" in table_columns(db_alias, "scenarios_runnote")


def test_json_is_one_document_and_plan_changes_nothing(db_alias):
    out, err, code = run_command("safemigrate", "--plan", "--json", database=db_alias)
    planned = json.loads(out)
    assert code == 0
    assert "ledger.0004_remove_entry_memo" in [m["migration"] for m in planned["plan"]]
    assert not connections[db_alias].introspection.table_names()
    out, _, _ = run_command("safemigrate", "--sql", database=db_alias)
    assert "CREATE TABLE" in out
    assert not connections[db_alias].introspection.table_names()
    out, err, code = run_command("safemigrate", "--json", database=db_alias)
    document = json.loads(out)
    assert document["outcome"] == "succeeded"
    assert "Applying" in err


def test_failing_migration_stops_the_run_and_keeps_earlier_ones(db_alias, scenario):
    scenario("failing")
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert "scenarios.0002_breaks failed: RuntimeError" in err
    # The open "Applying" line is ended, so that on a terminal the error starts its own.
    assert out.endswith("  Applying scenarios.0002_breaks...\n")
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert "size" not in table_columns(db_alias, "scenarios_widget")
    run = Run.objects.using(db_alias).get(command="safemigrate", outcome="failed")
    assert run.failed_migration == "scenarios.0002_breaks"
    steps = run.steps.values_list("app_label", "name")
    assert [f"{app}.{name}" for app, name in steps] == [
        *own_migration_labels(),  # made first, on this new database
        "scenarios.0001_initial",
    ]
    assert not MigrationHash.objects.using(db_alias).filter(name="0002_breaks").exists()


def test_a_migration_that_calls_sys_exit_fails_the_run(db_alias, scenario, monkeypatch):
    """SystemExit(0) went past the run's failure handling: exit 0, no JSON document, and
    the run recorded failed with error '0' and none of the steps it applied."""
    scenario("failing")
    monkeypatch.setenv("FAIL_WITH", "exit")
    out, err, code = run_command("safemigrate", "scenarios", "--json", database=db_alias)
    assert code == 5
    document = json.loads(out)
    assert (document["outcome"], document["exit_code"]) == ("failed", 5)
    assert "scenarios.0002_breaks failed: SystemExit: 0" in document["error"]
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    run = Run.objects.using(db_alias).get(command="safemigrate", outcome="failed")
    assert run.failed_migration == "scenarios.0002_breaks"
    assert list(run.steps.filter(app_label="scenarios").values_list("name", flat=True)) == [
        "0001_initial"
    ]


def test_fake_records_without_running(db_alias, scenario):
    scenario("basic")
    out, err, code = run_command("safemigrate", "scenarios", "0001", "--fake", database=db_alias)
    assert (code, err) == (0, "")
    assert f"\nFaked 1 migration(s) (applied migrator's own {own_migrations()} first) to " in out
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert "scenarios_widget" not in connections[db_alias].introspection.table_names()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "No installed app with label 'nope'."),
        (("ledger", "0099"), "No migration of 'ledger' matches '0099'; known: 0001_initial, "),
    ],
)
def test_unknown_targets_exit_1(db_alias, args, message):
    _, err, code = run_command("safemigrate", *args, database=db_alias)
    assert code == 1
    assert message in err


def test_the_revision_recorded_is_the_projects_wherever_the_command_runs(db_alias, tmp_path):
    """Run from inside another git repository, the audit names the project's commit."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [*git, "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True
    )
    ci = dict.fromkeys(("MIGRATOR_REVISION", "GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"))

    done = subprocess.run(
        django_admin("safemigrate", "--noinput"),
        env=child_env(db_alias, **ci),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    project = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    assert Run.objects.using(db_alias).get().git_revision == project


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the checkout to another uid needs root")
def test_a_checkout_git_refuses_to_read_is_said_once_with_how_to_fix_it(
    db_alias, tmp_path, settings, monkeypatch
):
    """Code installed by one user, run by another: git refuses the checkout (dubious
    ownership); the run says so in one line instead of recording no revision silently."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        os.chown(path, 54321, 54321)  # another user's checkout
    settings.BASE_DIR = tmp_path
    for variable in ("MIGRATOR_REVISION", "GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"):
        monkeypatch.delenv(variable, raising=False)
    warning = (
        f"git refuses to read the revision of {tmp_path} (another user owns it), so runs "
        "record none: set MIGRATOR_REVISION to the deployed revision, or run "
        f"'git config --global --add safe.directory {tmp_path}' as this user.\n"
    )

    out, err, code = run_command("safemigrate", "ledger", "0001", database=db_alias)
    assert (code, err, out.count(warning)) == (0, "", 1)
    assert Run.objects.using(db_alias).get().git_revision == ""
    monkeypatch.setenv("MIGRATOR_REVISION", "4f1c2e9")
    out, _, code = run_command("safemigrate", "ledger", "0002", database=db_alias)
    assert (code, "safe.directory" in out) == (0, False)
    assert Run.objects.using(db_alias).latest("id").git_revision == "4f1c2e9"


def test_unreachable_server_is_one_clear_line_without_the_password():
    done = subprocess.run(
        django_admin("safemigrate", "--noinput"),
        env={
            **child_env("postgres"),
            "MIGRATOR_TEST_PG_URL": "postgresql://deploy:hunter2@127.0.0.1:1/nowhere",
            "MIGRATOR_TEST_TARGET": "postgres:nowhere",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("CommandError")]
    assert len(errors) == 1
    assert "Cannot use database 'default'" in errors[0]
    assert "hunter2" not in done.stderr + done.stdout


def test_traceback_is_masked_and_keeps_the_exit_code(db_alias):
    """Django re-raises a CommandError under --traceback: shown unmasked, exit 1."""
    done = run_child(
        db_alias,
        *("safemigrate", "scenarios", "--traceback", "--json"),
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.leaks_password",
    )

    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 5
    assert "Traceback (most recent call last):" in done.stderr
    assert "RuntimeError: auth failed for " in done.stderr  # the migration's own error
    assert "password=*** user=app; retry postgres://***@db.internal/app" in done.stderr
    assert "password=nopassword" not in done.stderr
    assert "app:nopassword@" not in done.stderr


def test_what_a_migration_prints_stays_out_of_the_json_document(db_alias):
    done = run_child(
        db_alias,
        *("safemigrate", "scenarios", "--json"),
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.prints",
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "succeeded"
    assert "Backfilled 0 rows\n" in done.stderr


@pytest.mark.parametrize("content", [b"not a database\n" * 300, b""], ids=["garbage", "missing"])
def test_a_file_that_is_no_sqlite_database_is_one_line_and_left_as_it_is(tmp_path, content):
    path = tmp_path / ("db.sqlite3" if content else "gone/db.sqlite3")
    if content:
        path.write_bytes(content)
    reason = "file is not a database" if content else "unable to open database file"
    for command in (("safemigrate",), ("rollback", "--last"), ("backup",), ("migrationstatus",)):
        done = run_child("default", *command, MIGRATOR_TEST_TARGET=f"default:{path}")
        assert (done.returncode, done.stdout, done.stderr) == (
            1,
            "",
            f"CommandError: Cannot use database 'default': {reason}. Check that the DATABASES "
            "settings are right and the file is an intact SQLite database.\n",
        ), command
    assert path.read_bytes() == content if content else not path.parent.exists()


def test_a_sqlite_file_another_connection_writes_to_is_exit_4_and_nothing_changes(tmp_path):
    path = tmp_path / "db.sqlite3"
    target = f"default:{path}"
    done = run_child("default", "safemigrate", "ledger", "0002", MIGRATOR_TEST_TARGET=target)
    assert done.returncode == 0, done.stderr
    before = path.read_bytes()  # not while writing: closing a file drops a process's locks
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a web process in the middle of a write
    try:
        for command in (("safemigrate",), ("rollback", "--last", "--no-backup")):
            done = run_child(
                "default",
                *command,
                MIGRATOR_TEST_TARGET=target,
                MIGRATOR_TEST_SQLITE_TIMEOUT="0.1",
            )
            assert (done.returncode, done.stderr) == (
                4,
                "CommandError: Database 'default' is locked: another connection kept writing to "
                "the SQLite file for 0.1 s (OPTIONS['timeout']). Run the command again once it "
                "is done, or raise that timeout.\n",
            ), command
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert path.read_bytes() == before


def test_bad_arguments_exit_1_not_argparse_2(db_alias):
    done = run_child(db_alias, "safemigrate", "--lock-timeout", "nan")  # would wait forever
    assert done.returncode == 1
    assert done.stderr.endswith(
        "error: argument --lock-timeout: 'nan' must be a finite number of seconds, 0 or more\n"
    )
    # Flags that would be ignored are refused, one line, exit 1.
    for argv, said in [
        (("migrationstatus", "--stage", "before-deploy"), "--stage goes with --check."),
        (("backup", "--list", "--label", "x"), "--format and --label go with taking a backup."),
        (
            ("backup", "--prune", "--format", "portable"),
            "--format and --label go with taking a backup.",
        ),
    ]:
        done = run_child(db_alias, *argv)
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"CommandError: {said}\n")
    done = run_child(db_alias, "safemigrate", "--plan", "--sql")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.endswith("error: argument --sql: not allowed with argument --plan\n")
    # Options spelt in full: --jso would be --json only as long as its arguments parse.
    done = run_child(db_alias, "migrationhistory", "--jso")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.endswith("error: unrecognized arguments: --jso\n")


NOT_ATOMIC = (
    "is not atomic: what it did before it stopped stays, not recorded as applied (check the "
    "database by hand)"
)


def test_a_failing_non_atomic_migration_is_not_said_to_be_rolled_back(db_alias, scenario):
    """Its first operation stays done: the error says so instead of "It was rolled back"."""
    scenario("failing_nonatomic")

    _, err, code = run_command("safemigrate", "scenarios", database=db_alias)

    assert (code, err) == (
        5,
        "Migration scenarios.0002_half_done failed: RuntimeError: scenario step failed on "
        f"purpose. It {NOT_ATOMIC}; 1 earlier migration(s) stay applied. Fix it and run "
        "safemigrate again.\n",
    )
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert table_columns(db_alias, "scenarios_widget") == ["id", "size"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_non_atomic_migration_interrupted_is_not_said_to_be_rolled_back(db_alias, signum):
    child = start_child(
        db_alias,
        "safemigrate",
        "scenarios",
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.failing_nonatomic",
        PAUSE_AT="scenarios.0002_half_done",
    )
    try:
        wait_for_line(child, "PAUSED")  # the column is added, and stays: not atomic
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()

    assert (child.returncode, err) == (
        5,
        f"CommandError: Interrupted during scenarios.0002_half_done; that migration {NOT_ATOMIC} "
        "and 1 earlier one(s) stay applied. Then run safemigrate again to finish.\n",
    )
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert table_columns(db_alias, "scenarios_widget") == ["id", "size"]
    assert Run.objects.using(db_alias).get().outcome == "interrupted"


NOTIFYING = json.dumps(
    {
        "NOTIFY": ["tests.scenarios.apps.pause_notified"],
        "NOTIFY_EVENTS": ["applied"],
        "NOTIFY_TIMEOUT": 600,
    }
)
ALL_FOUR = "the 4 migration(s) this run applied all committed and stay applied"
TWO_OF_FOUR = "the 2 migration(s) this run applied all committed and stay applied"


@pytest.mark.parametrize(
    ("pause_at", "signum", "said"),
    [
        ("post_migrate", signal.SIGINT, f"during post_migrate; {ALL_FOUR}"),
        ("post_migrate", signal.SIGTERM, f"during post_migrate; {ALL_FOUR}"),
        (
            "applied:scenarios.0002_widget_size",
            signal.SIGINT,
            f"after scenarios.0002_widget_size; {TWO_OF_FOUR}",
        ),
        (
            "applied:scenarios.0002_widget_size",
            signal.SIGTERM,
            f"after scenarios.0002_widget_size; {TWO_OF_FOUR}",
        ),
        (
            "notified:scenarios.0002_widget_size",
            signal.SIGINT,
            f"after scenarios.0002_widget_size; {TWO_OF_FOUR}",
        ),
        (
            "notified:scenarios.0002_widget_size",
            signal.SIGTERM,
            f"after scenarios.0002_widget_size; {TWO_OF_FOUR}",
        ),
    ],
    ids=[
        "post-migrate-ctrl-c",
        "post-migrate-sigterm",
        "applied-receiver-ctrl-c",
        "applied-receiver-sigterm",  # SIGTERM was caught there as a receiver's error
        "notify-receiver-ctrl-c",
        "notify-receiver-sigterm",
    ],
)
def test_an_interrupt_between_migrations_says_every_applied_one_committed(
    db_alias, pause_at, signum, said
):
    """No migration was in progress: none was rolled back, all the run applied stay."""
    child = start_child(
        db_alias,
        "safemigrate",
        "scenarios",
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.basic",
        MIGRATOR_TEST_SETTINGS=NOTIFYING,
        PAUSE_AT=pause_at,
    )
    try:
        wait_for_line(child, "PAUSED")  # in a receiver or handler, between two migrations
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()

    message = f"Interrupted {said}. Run safemigrate again to finish."
    assert (child.returncode, err) == (5, f"CommandError: {message}\n")
    run = Run.objects.using(db_alias).get()
    assert (run.outcome, run.error, run.failed_migration) == ("interrupted", message, "")
    steps = run.steps.filter(app_label="scenarios").values_list("name", flat=True)
    assert list(steps) == applied(db_alias, "scenarios")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_as_the_run_starts_closes_its_record(db_alias, signum):
    """The ``started`` event was sent before the record was in the run's hands: the
    command exited 5 and its record stayed ``running`` until another command looked."""
    child = start_child(
        db_alias,
        "safemigrate",
        "scenarios",
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.basic",
        PAUSE_AT="started",
    )
    try:
        wait_for_line(child, "PAUSED")  # in a run_started receiver
        child.send_signal(signum)
        child.communicate(timeout=60)
    finally:
        child.kill()

    assert child.returncode == 5
    run = Run.objects.using(db_alias).get(command="safemigrate")
    assert (run.outcome, run.finished_at is not None) == ("interrupted", True)
    assert applied(db_alias, "scenarios") == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_sigterm_while_the_run_record_is_inserted_closes_it(db_alias, scenario):
    """The signal's handler runs once the INSERT returns: the record was made, then left
    ``running`` as the command exited 5."""
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0001", database=db_alias)[2] == 0
    holder = raw_connection(db_alias)
    try:
        with holder.cursor() as cursor:  # the next run's INSERT waits for it
            cursor.execute("LOCK TABLE migrator_run IN SHARE MODE")
        child = start_child(
            db_alias,
            "safemigrate",
            "scenarios",
            MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.basic",
        )

        def inserting() -> bool:
            found = execute(
                db_alias,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO \"migrator_run\"%%'",
            )
            return bool(found) or child.poll() is not None

        wait_until(inserting, what="the run's INSERT to wait for the lock")
        child.send_signal(signal.SIGTERM)
    finally:
        holder.rollback()
        holder.close()
    child.communicate(timeout=60)

    assert child.returncode == 5
    run = Run.objects.using(db_alias).filter(command="safemigrate").latest("id")
    assert (run.outcome, run.finished_at is not None) == ("interrupted", True)
    assert applied(db_alias, "scenarios") == ["0001_initial"]


def test_a_failing_post_migrate_handler_is_not_said_to_roll_a_migration_back(db_alias, scenario):
    def broken(sender, **kwargs):
        raise RuntimeError("handler failed on purpose")

    scenario("basic")
    post_migrate.connect(broken, dispatch_uid="broken")
    try:
        _, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    finally:
        post_migrate.disconnect(dispatch_uid="broken")

    assert (code, err) == (
        5,
        "Failed during post_migrate: RuntimeError: handler failed on purpose; the 4 "
        "migration(s) this run applied all committed and stay applied. Fix it and run "
        "safemigrate again to finish.\n",
    )
    run = Run.objects.using(db_alias).get(command="safemigrate")
    assert len(applied(db_alias, "scenarios")) == 4
    assert run.steps.exclude(app_label="migrator").count() == 4


def test_a_database_lost_after_the_last_migration_committed_is_not_said_unusable(
    db_alias, scenario
):
    """A failover after the plan committed: exit 5 with what was applied, not exit 1 "Cannot
    use database" (said of one unusable before anything changed)."""
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("a SQLite file does not go away between two statements")
    scenario("basic")
    child = start_child(
        db_alias,
        "safemigrate",
        "scenarios",
        "--json",
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.basic",
        PAUSE_AT="post_migrate:end",
    )
    try:
        wait_for_line(child, "PAUSED")  # every migration committed, post_migrate done
        execute(  # its session ends, as a server that restarts ends it (not the lock's)
            db_alias,
            "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND application_name = ''",
        )
        out, err = child.communicate(input="\n", timeout=60)
    finally:
        child.kill()

    assert child.returncode == 5, err
    document = json.loads(out)
    message = document["error"]
    assert message.startswith("Failed while recording the run's steps: OperationalError: ")
    assert message.endswith(
        "; the 4 migration(s) this run applied all committed and stay applied. Fix it and "
        "run safemigrate again to finish."
    )
    assert err.endswith(f"CommandError: {message}\n")
    assert (document["exit_code"], document["outcome"], document["failed_migration"]) == (
        5,
        "failed",
        "",
    )
    names = [step["migration"].split(".")[1] for step in document["migrations"]]
    assert names == applied(db_alias, "scenarios")
    assert len(names) == 4
    # Its record was closed on a new connection, the steps rebuilt from the hash records.
    run = Run.objects.using(db_alias).get(command="safemigrate")
    assert (run.outcome, run.error.startswith("OperationalError: ")) == ("failed", True)
    assert list(run.steps.filter(app_label="scenarios").values_list("name", flat=True)) == names
    assert run_command("safemigrate", "scenarios", database=db_alias) == (
        "No migrations to apply.\n",
        "",
        0,
    )


# Writes of a run's steps refused while its record says "running": as a SQLite file that
# another connection keeps write-locked until the run has failed and is closing its record.
REFUSING_STEPS_WHILE_RUNNING = {
    "sqlite": [
        "CREATE TRIGGER refuse_steps BEFORE INSERT ON migrator_runstep "
        "WHEN (SELECT outcome FROM migrator_run WHERE id = NEW.run_id) = 'running' "
        "BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_steps() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF (SELECT outcome FROM migrator_run WHERE id = NEW.run_id) = 'running' THEN "
        "RAISE EXCEPTION 'database is locked'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_steps BEFORE INSERT ON migrator_runstep "
        "FOR EACH ROW EXECUTE FUNCTION refuse_steps()",
    ],
}


def test_a_failed_run_whose_steps_were_refused_keeps_them_for_rollback_last(db_alias, scenario):
    """Its steps are rebuilt from the hash records its migrations committed, as for a killed
    run: ``rollback --last`` undoes what it applied instead of "Nothing to roll back"."""
    scenario("failing")
    assert run_command("safemigrate", "migrator", database=db_alias)[2] == 0  # tables only
    for sql in REFUSING_STEPS_WHILE_RUNNING[connections[db_alias].vendor]:
        execute(db_alias, sql)

    _, err, code = run_command("safemigrate", "scenarios", database=db_alias)

    assert code == 5, err
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    run = Run.objects.using(db_alias).get(command="safemigrate", outcome="failed")
    assert (run.outcome, run.failed_migration) == ("failed", "scenarios.0002_breaks")
    steps = [(step.name, step.duration is not None) for step in run.steps.all()]
    assert steps == [("0001_initial", True)]
    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert (err, code) == ("", 0)
    assert f"Undoes safemigrate run #{run.pk} (failed)." in out
    assert "scenarios.0001_initial" in out


def test_a_failing_migration_is_one_line_even_when_the_database_says_more(db_alias, scenario):
    """PostgreSQL's errors carry DETAIL and HINT lines; the error stays one line, all kept."""
    scenario("failing_unique")
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Migration scenarios.0002_unique_name failed: IntegrityError: ")
    if connections[db_alias].vendor == "postgresql":
        assert "; DETAIL:  Key (name)=(same) is duplicated. It was rolled back;" in err
    assert err.endswith(
        "It was rolled back; 1 earlier migration(s) stay applied. "
        "Fix it and run safemigrate again.\n"
    )
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    run = Run.objects.using(db_alias).get(command="safemigrate")
    assert "\n" in run.error or connections[db_alias].vendor == "sqlite"  # the audit keeps all
