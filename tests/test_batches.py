"""Batched data migrations: every row once, progress, kill -9 and resume, reverse, rollback.

Every test runs on SQLite and PostgreSQL (the ``db_alias`` fixture), through the commands
(in process, and in real child processes for the kill) and through ``migrator.runner``.
"""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.writer import OperationWriter

from migrator import operations, runner, signals
from migrator.models import BatchProgress, Run
from migrator.operations import RunPythonInBatches
from migrator.types import RunOptions
from tests.scenarios.migration_sets.batch_steps import bump, unbump
from tests.utils import (
    applied,
    killed_when_paused,
    run_child_peak_rss,
    run_command,
    start_child,
)

ITEMS = "tests.scenarios.migration_sets.batch_items"
PEAK_RSS_LIMIT_KB = 150 * 1024


def fill(alias: str, rows: int) -> None:
    """Insert ``rows`` items with a zero counter, in one statement (no Python loop)."""
    connection = connections[alias]
    if not rows:
        return
    if connection.vendor == "postgresql":
        sql = "INSERT INTO scenarios_item (times) SELECT 0 FROM generate_series(1, %s)"
    else:
        sql = (
            "INSERT INTO scenarios_item (times) WITH RECURSIVE n(x) AS "
            "(SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %s) SELECT 0 FROM n"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows])


def counters(alias: str) -> dict[int, int]:
    """{times processed: how many rows}."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT times, count(*) FROM scenarios_item GROUP BY times")
        return dict(cursor.fetchall())


def items_table(alias: str, scenario, rows: int, name: str = "batch_items") -> None:
    scenario(name)
    assert run_command("safemigrate", "scenarios", "0001", database=alias)[2] == 0
    fill(alias, rows)


def batch_events(alias: str, **target: str) -> list[dict]:
    events = []
    runner.safemigrate(
        **target,
        options=RunOptions(database=alias),
        progress=lambda event: events.append(event) if event.action == "batch_progress" else None,
    )
    assert {event.migration for event in events} <= {"scenarios.0002_backfill"}
    return [event.data for event in events]


def test_ten_thousand_rows_once_each_with_progress_lines_and_flat_memory(db_alias, scenario):
    items_table(db_alias, scenario, 10_000)
    done, peak_rss = run_child_peak_rss(
        db_alias, "safemigrate", "scenarios", MIGRATOR_TEST_SCENARIO=ITEMS
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("  Applying scenarios.0002_backfill...")
    assert lines[start + 1] == "    0/10,000 rows (0%)"
    assert lines[-3].startswith("    10,000/10,000 rows (100%), ")
    assert lines[-3].endswith(" rows/s, done")
    assert lines[-2].startswith("  Applying scenarios.0002_backfill... OK (")
    assert counters(db_alias) == {1: 10_000}
    assert not BatchProgress.objects.using(db_alias).exists()  # forgotten once recorded
    assert peak_rss < PEAK_RSS_LIMIT_KB


def test_progress_events_carry_rows_total_rate_and_time_left(db_alias, scenario):
    items_table(db_alias, scenario, 250)
    events = batch_events(db_alias)
    assert [e["rows_done"] for e in events] == [0, 100, 200, 250]
    assert [e["finished"] for e in events] == [False, False, False, True]
    assert {e["rows_total_estimate"] for e in events} == {250}
    assert events[0]["rate"] is None
    assert all(e["rate"] > 0 for e in events[1:])
    assert all(e["eta"] >= 0 for e in events[1:3])
    assert events[-1]["model"] == "scenarios.Item"
    assert counters(db_alias) == {1: 250}


def test_batch_size_setting_is_the_default(db_alias, scenario, settings):
    settings.MIGRATOR = {**settings.MIGRATOR, "BATCH_SIZE": 40}
    items_table(db_alias, scenario, 100, "batch_irreversible")
    assert [e["rows_done"] for e in batch_events(db_alias)] == [0, 40, 80, 100]
    assert counters(db_alias) == {1: 100}


def test_an_empty_table_finishes_at_once(db_alias, scenario):
    items_table(db_alias, scenario, 0)
    events = batch_events(db_alias)
    assert [(e["rows_done"], e["finished"]) for e in events] == [(0, False), (0, True)]
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_backfill"]


def test_progress_bar_is_redrawn_in_place_on_a_terminal(db_alias, scenario):
    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    items_table(db_alias, scenario, 300)
    out = Terminal()
    call_command("safemigrate", "scenarios", database=db_alias, stdout=out, no_color=True)
    text = out.getvalue()
    assert "\r    [" + "." * 30 + "] 0/300 rows (0%)" in text
    assert "\r    [" + "#" * 30 + "] 300/300 rows (100%), " in text
    assert text.count("\r") == 5  # start, three batches, the empty last one
    assert "done\n  Applying scenarios.0002_backfill... OK (" in text


def test_kill_9_half_way_then_safemigrate_resumes_and_every_row_is_done_once(db_alias, scenario):
    items_table(db_alias, scenario, 3_000)
    child = start_child(
        db_alias, "safemigrate", "scenarios", MIGRATOR_TEST_SCENARIO=ITEMS, PAUSE_AT_BATCH="12"
    )
    killed_when_paused(child)  # batch 12 and its progress have committed
    assert counters(db_alias) == {1: 1_200, 0: 1_800}
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    last_batch = BatchProgress.objects.using(db_alias).get().updated_at
    [in_flight] = operations.progress_in_flight(connections[db_alias])
    assert in_flight["migration"] == "scenarios.0002_backfill"
    assert (in_flight["rows_done"], in_flight["rows_estimated"]) == (1_200, 3_000)
    assert (in_flight["direction"], in_flight["operation_index"]) == ("apply", 0)
    interrupted = []
    signals.run_interrupted.connect(
        lambda sender, run, **kwargs: interrupted.append(run.pk), weak=False, dispatch_uid="kill"
    )
    try:  # migrationstatus, the first to look, marks the killed run interrupted
        status, _, _ = run_command("migrationstatus", database=db_alias)
        assert "scenarios.0002_backfill: 1,200/3,000 rows (40%)" in status
        out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    finally:
        signals.run_interrupted.disconnect(dispatch_uid="kill")
    assert (code, err) == (0, "")
    assert "\n    1,200/3,000 rows (40%)\n" in out  # resumed after the last committed batch
    assert "    3,000/3,000 rows (100%)" in out
    assert counters(db_alias) == {1: 3_000}
    assert operations.progress_in_flight(connections[db_alias]) == []
    runs = list(Run.objects.using(db_alias).order_by("id"))
    assert [run.outcome for run in runs] == ["succeeded", "interrupted", "succeeded"]
    assert interrupted == [runs[1].pk]
    assert runs[1].finished_at == last_batch  # its last known activity: not its start
    assert [step.name for step in runs[2].steps.all()] == ["0002_backfill"]


def test_a_rollback_killed_half_way_is_not_ready_and_said_so_until_it_is_run_again(
    db_alias, scenario
):
    """Killed half-way, a rollback leaves its migration recorded as applied and half
    undone: nothing is pending, yet the database is not as any release expects."""
    items_table(db_alias, scenario, 3_000)
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    child = start_child(
        db_alias,
        *("rollback", "scenarios", "0001", "--noinput"),
        MIGRATOR_TEST_SCENARIO=ITEMS,
        PAUSE_AT_BATCH="5",
    )
    killed_when_paused(child)  # batch 5 of the undo and its progress have committed
    assert counters(db_alias) == {0: 500, 1: 2_500}
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_backfill"]
    last_batch = BatchProgress.objects.using(db_alias).get(direction="unapply").updated_at

    out, err, code = run_command("migrationstatus", "--check", database=db_alias)

    assert code == 1
    assert err == (
        "Database 'default' is not ready: a batched data migration stopped half-way: "
        "scenarios.0002_backfill (unapply); run the command that stopped (safemigrate, or the "
        "rollback) again to finish it.\n"
    ).replace("'default'", repr(db_alias))
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert (code, err) == (0, "")
    assert (
        "scenarios.0002_backfill was being unapplied in batches when its rollback stopped "
        "(500 rows undone); it is still recorded as applied. Run that rollback again to "
        "finish it: it resumes."
    ) in out
    assert counters(db_alias) == {0: 500, 1: 2_500}  # nothing applied again
    killed = Run.objects.using(db_alias).get(command="rollback")
    assert (killed.outcome, killed.finished_at) == ("interrupted", last_batch)

    out, err, code = run_command("rollback", "scenarios", "0001", "--noinput", database=db_alias)

    assert (code, err) == (0, "")
    assert counters(db_alias) == {0: 3_000}
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 1  # 0002 pending
    assert operations.progress_in_flight(connections[db_alias]) == []


def test_reverse_runs_on_rollback_and_a_reapply_starts_from_the_first_row(db_alias, scenario):
    items_table(db_alias, scenario, 250)
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    out, err, code = run_command("rollback", "scenarios", "0001", "--noinput", database=db_alias)
    assert (code, err) == (0, "")
    assert "Unapplying scenarios.0002_backfill..." in out
    assert "    250/250 rows (100%)" in out
    assert counters(db_alias) == {0: 250}
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert not BatchProgress.objects.using(db_alias).exists()
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert counters(db_alias) == {1: 250}


def test_the_plan_reviews_it_as_code_over_its_table_both_ways(db_alias, scenario):
    """It was ML503 info, 'not analysed': out of the list a run shows for review."""
    items_table(db_alias, scenario, 250)

    def findings(*argv: str) -> list[tuple]:
        out, err, code = run_command(*argv, "--plan", "--json", database=db_alias)
        assert (code, err) == (0, "")
        return [
            (f["code"], f["severity"], f["table"], f["rows"], f["message"])
            for m in json.loads(out)["plan"]
            for o in m["operations"]
            for f in o["findings"]
        ]

    assert findings("safemigrate", "scenarios") == [
        (
            "ML501",
            "warning",
            "scenarios_item",
            250,
            "RunPythonInBatches bump over scenarios_item (250 rows): effect unknown to "
            "migrator, batch by batch.",
        )
    ]
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    [(code, _, table, rows, message)] = findings("rollback", "scenarios", "0001")
    assert (code, table, rows) == ("ML501", "scenarios_item", 250)
    assert message.startswith("RunPythonInBatches unbump over scenarios_item (250 rows)")


def test_plain_django_migrate_runs_it_forwards_and_backwards(db_alias, scenario):
    items_table(db_alias, scenario, 150)
    call_command("migrate", "scenarios", database=db_alias, verbosity=0)
    assert counters(db_alias) == {1: 150}
    call_command("migrate", "scenarios", "0001", database=db_alias, verbosity=0)
    assert counters(db_alias) == {0: 150}
    call_command("migrate", "scenarios", database=db_alias, verbosity=0)
    assert counters(db_alias) == {1: 150}


def test_without_a_reverse_rollback_refuses_with_7_and_changes_nothing(db_alias, scenario):
    items_table(db_alias, scenario, 50, "batch_irreversible")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    out, err, code = run_command("rollback", "scenarios", "0001", "--noinput", database=db_alias)
    assert code == 7
    assert "scenarios.0002_backfill cannot be unapplied" in out + err
    assert counters(db_alias) == {1: 50}
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_backfill"]


def test_the_operation_is_described_serialised_and_validated():
    operation = RunPythonInBatches("Item", bump, unbump, batch_size=500, pause=0.5)
    assert operation.reversible
    assert not RunPythonInBatches("Item", bump).reversible
    assert operation.describe() == "Raw Python operation on Item in batches of 500"
    assert operation.deconstruct() == (
        "RunPythonInBatches",
        [],
        {
            "model_name": "Item",
            "function": bump,
            "reverse_function": unbump,
            "batch_size": 500,
            "pause": 0.5,
        },
    )
    written, imports = OperationWriter(operation, indentation=0).serialize()
    assert written.startswith("migrator.operations.RunPythonInBatches(")
    assert "import migrator.operations" in imports
    for bad in ({"batch_size": 0}, {"pause": -1}):
        with pytest.raises(ValueError, match="must"):
            RunPythonInBatches("Item", bump, **bad)
