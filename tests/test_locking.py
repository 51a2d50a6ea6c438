"""One run at a time, kill -9 and Ctrl-C: real child processes against both databases."""

import json
import signal

import pytest
from django.db import connections

from migrator import locking
from migrator.models import Run
from tests.utils import (
    applied,
    own_migration_labels,
    run_child,
    run_command,
    start_child,
    table_columns,
    wait_for_line,
)

BASIC = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"}
PAUSED_IN_SLOW_STEP = {**BASIC, "PAUSE_AT": "scenarios.0003_slow_step"}
ROLLBACK_FLAGS = ("--noinput", "--yes", "--allow-data-loss")


def slow_step_runs(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scenarios_ledger")
        return cursor.fetchone()[0]


@pytest.fixture
def paused_run(db_alias, scenario):
    """A child safemigrate paused inside scenarios.0003_slow_step, holding the lock."""
    scenario("basic")
    child = start_child(db_alias, "safemigrate", "scenarios", **PAUSED_IN_SLOW_STEP)
    wait_for_line(child, "PAUSED")
    yield child
    if child.poll() is None:
        child.kill()
    child.wait(timeout=60)
    child.stdout.close()
    child.stderr.close()
    child.stdin.close()


def test_concurrent_runs_apply_each_migration_once(db_alias, paused_run):
    waiting = [start_child(db_alias, "safemigrate", "scenarios", **BASIC) for _ in range(2)]
    for child in waiting:
        wait_for_line_starting(child, "Waiting for the migration lock held by")
    paused_run.stdin.write("\n")
    paused_run.stdin.flush()
    assert paused_run.wait(timeout=120) == 0
    for child in waiting:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "No migrations to apply." in out
    assert slow_step_runs(db_alias) == 1
    assert applied(db_alias, "scenarios")[-1] == "0004_widget_weight"


def wait_for_line_starting(child, prefix: str) -> None:
    wait_for_line(child, prefix, starting=True)


def test_a_second_run_gives_up_after_the_lock_timeout_naming_the_holder(db_alias, paused_run):
    done = run_child(db_alias, "safemigrate", "scenarios", "--lock-timeout", "1", **BASIC)
    assert done.returncode == 4
    assert "CommandError: Database 'default' is locked by another migrator run (" in done.stderr
    assert f"pid {paused_run.pid}" in done.stderr
    assert "raise --lock-timeout" in done.stderr
    holder = locking.current_holder(connections[db_alias])
    assert holder is not None
    assert holder.pid == paused_run.pid


def test_kill_9_mid_migration_leaves_nothing_half_applied(db_alias, paused_run):
    paused_run.kill()
    paused_run.wait(timeout=60)
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    assert slow_step_runs(db_alias) == 0
    assert locking.current_holder(connections[db_alias]) is None
    rerun = run_child(db_alias, "safemigrate", "scenarios", "--lock-timeout", "10", **BASIC)
    assert rerun.returncode == 0, rerun.stderr
    assert "Applying scenarios.0003_slow_step... OK" in rerun.stdout
    assert slow_step_runs(db_alias) == 1
    outcomes = list(Run.objects.using(db_alias).order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["interrupted", "succeeded"]
    killed = Run.objects.using(db_alias).get(outcome="interrupted")
    steps = list(killed.steps.values_list("app_label", "name", "duration"))
    assert [f"{app}.{name}" for app, name, _ in steps] == [
        *own_migration_labels(),  # made first, on this new database: the run's too
        "scenarios.0001_initial",
        "scenarios.0002_widget_size",
    ]
    assert all(duration is not None for _, _, duration in steps)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_rolls_back_and_records_the_run(db_alias, paused_run, signum):
    paused_run.send_signal(signum)
    assert paused_run.wait(timeout=60) == 5
    assert "Interrupted during scenarios.0003_slow_step" in paused_run.stderr.read()
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    assert slow_step_runs(db_alias) == 0
    run = Run.objects.using(db_alias).get()
    assert (run.outcome, run.failed_migration) == ("interrupted", "scenarios.0003_slow_step")
    assert run.error.startswith("Interrupted during scenarios.0003_slow_step; that migration ")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert slow_step_runs(db_alias) == 1


@pytest.mark.parametrize("stop", ["kill-9", "sigterm", "ctrl-c"])
def test_a_rollback_stopped_mid_migration_leaves_it_applied_and_can_run_again(
    db_alias, scenario, stop
):
    scenario("basic")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    child = start_child(
        db_alias,
        "rollback",
        "scenarios",
        "0002",
        *ROLLBACK_FLAGS,
        **BASIC,
        PAUSE_AT="scenarios.0003_slow_step:reverse",
    )
    try:
        wait_for_line(child, "PAUSED")  # 0004 is unapplied; 0003's column is dropped
        if stop == "kill-9":
            child.kill()
            child.wait(timeout=60)
        else:
            child.send_signal(signal.SIGTERM if stop == "sigterm" else signal.SIGINT)
            assert child.wait(timeout=60) == 5
            by = "SIGTERM" if stop == "sigterm" else "Ctrl-C"
            assert (
                f"Interrupted by {by} while unapplying scenarios.0003_slow_step; its "
                "transaction was rolled back. Unapplied: "
                "scenarios.0004_widget_weight. Still applied: scenarios.0003_slow_step. Run "
                "'rollback scenarios 0002' again to continue."
            ) in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
    # 0003's transaction was rolled back whole: still applied, its column still there.
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size", "0003_slow_step"]
    assert "colour" in table_columns(db_alias, "scenarios_widget")
    assert locking.current_holder(connections[db_alias]) is None
    rerun = run_child(db_alias, "rollback", "scenarios", "0002", *ROLLBACK_FLAGS, **BASIC)
    assert rerun.returncode == 0, rerun.stderr
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    assert "colour" not in table_columns(db_alias, "scenarios_widget")
    stopped, finished = Run.objects.using(db_alias).filter(command="rollback").order_by("id")
    assert (stopped.outcome, finished.outcome) == ("interrupted", "succeeded")
    assert list(stopped.steps.values_list("name", "direction")) == [
        ("0004_widget_weight", "unapply")
    ]


def test_a_restore_gives_up_after_its_lock_timeout_changing_nothing(
    db_alias, scenario, settings, tmp_path
):
    backups = tmp_path / "backups"
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(backups)}
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    out, err, code = run_command("backup", "--json", database=db_alias)
    assert (code, err) == (0, ""), err
    backup_id = json.loads(out)["id"]
    child = start_child(db_alias, "safemigrate", "scenarios", **PAUSED_IN_SLOW_STEP)
    try:
        wait_for_line(child, "PAUSED")
        done = run_child(
            db_alias,
            *("restore", backup_id, "--yes", "--lock-timeout", "1"),
            MIGRATOR_TEST_BACKUP_DIR=str(backups),
            MIGRATOR_TEST_SETTINGS='{"RESTORE_JOBS": 2}',
            **BASIC,
        )
        assert done.returncode == 4, done.stderr
        assert f"pid {child.pid}" in done.stderr
        assert "raise --lock-timeout" in done.stderr
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=60)
    assert applied(db_alias, "scenarios")[-1] == "0004_widget_weight"  # nothing restored
    assert not Run.objects.using(db_alias).filter(command="restore").exists()


def test_nothing_to_do_does_not_wait_for_the_lock(db_alias, scenario):
    scenario("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    with locking.migration_lock(connections[db_alias], timeout=0):
        out, err, code = run_command(
            "safemigrate", "scenarios", "0002", lock_timeout=0, database=db_alias
        )
    assert (out, code) == ("No migrations to apply.\n", 0)


def test_lock_key_is_stable():
    assert locking.lock_key("shop") == locking.lock_key("shop")
    assert locking.lock_key("shop") != locking.lock_key("shop2")
    assert locking.lock_key("shop") == -7384643314771828699


def test_rollback_last_during_a_run_says_the_run_is_still_going(db_alias, paused_run):
    """Which run --last means is not known until the run going on ends: it said no run
    was recorded (exit 7), and --plan showed the previous deploy's undo."""
    for flags in (("--plan",), ROLLBACK_FLAGS):
        done = run_child(db_alias, "rollback", "--last", *flags, **BASIC)
        assert (done.returncode, done.stdout) == (4, ""), done.stderr
        assert done.stderr.startswith("CommandError: safemigrate run #")
        assert "is still going (started " in done.stderr
        assert done.stderr.endswith(
            "--last undoes a run once it has ended: wait for it (or stop it), then run the "
            "rollback again.\n"
        )
    paused_run.stdin.write("\n")
    paused_run.stdin.flush()
    assert paused_run.wait(timeout=120) == 0
    done = run_child(db_alias, "rollback", "--last", *ROLLBACK_FLAGS, **BASIC)
    assert done.returncode == 0, done.stderr
    assert applied(db_alias, "scenarios") == []
