"""Risk analysis: findings per operation, forward and backward, table sizes, timeouts.

Through the public surface: ``safemigrate --plan`` (human and ``--json``),
``planning.describe_plan`` for backward plans (what ``rollback`` reads), ``tablesize.table_rows``,
and ``runner.safemigrate`` with a progress callback for the PostgreSQL lock timeouts.
"""

import json
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from migrator import compat, planning, risks, runner, tablesize
from migrator.conf import get_settings
from migrator.exceptions import MigrationFailed
from migrator.models import Run
from migrator.types import RunOptions
from tests.utils import applied, execute, raw_connection, run_command, table_columns

POSTGRES_ONLY = pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "risks.md"

# One migration per risk (tests/scenarios/migration_sets/risk_ops): the codes of each
# operation. The PostgreSQL lock and rewrite codes (ML3xx) only apply there.
PORTABLE = {
    "scenarios.0002_remove_field": ["ML101", "ML403"],
    "scenarios.0003_delete_model": ["ML102", "ML404"],
    "scenarios.0004_narrow_field": ["ML103"],
    "scenarios.0005_irreversible": ["ML201", "ML501"],
    "scenarios.0006_add_index": [],
    "scenarios.0007_add_unique": [],
    "scenarios.0008_add_check": [],
    "scenarios.0009_add_foreign_key": [],
    "scenarios.0010_set_not_null": [],
    "scenarios.0011_change_type": [],
    "scenarios.0012_add_not_null": ["ML307", "ML405"],
    "scenarios.0013_volatile_default": ["ML308", "ML405"],
    "scenarios.0014_rename_field": ["ML401"],
    "scenarios.0015_rename_model": ["ML402"],
    "scenarios.0016_run_sql": ["ML502"],
}
ON_POSTGRES = {
    **PORTABLE,
    "scenarios.0004_narrow_field": ["ML103", "ML306"],
    "scenarios.0006_add_index": ["ML301"],
    "scenarios.0007_add_unique": ["ML302"],
    "scenarios.0008_add_check": ["ML303"],
    "scenarios.0009_add_foreign_key": ["ML301", "ML304"],
    "scenarios.0010_set_not_null": ["ML305"],
    "scenarios.0011_change_type": ["ML306"],
}


def migrate(alias: str, *args: str) -> None:
    out, err, code = run_command("safemigrate", *args, database=alias)
    assert code == 0, err


def risk_ops_with_rows(alias: str) -> None:
    migrate(alias, "scenarios", "0001")
    for name in ("a", "b", "c"):
        execute(
            alias, f"INSERT INTO scenarios_widget (name, note, quantity) VALUES ('{name}', '', 1)"
        )
    for table in ("scenarios_gadget", "scenarios_old"):
        execute(alias, f"INSERT INTO {table} (name) VALUES ('x'), ('y')")


def parse_plan(out: str) -> dict[str, list[tuple[str, list[tuple[str, str, str]]]]]:
    """The human ``--plan`` output as {migration: [(operation, [(code, severity, message)])]}."""
    plan: dict = {}
    for line in out.splitlines():
        if line.startswith("Hints, one per app and code:"):
            break
        indent = len(line) - len(line.lstrip(" "))
        if indent == 2:
            migration = plan.setdefault(line.strip().split(" [")[0], [])  # label [stage]
        elif indent == 4:
            migration.append((line.strip(), []))
        elif indent == 6:
            code, severity, message = re.fullmatch(r"(ML\d{3}) (\w+): (.*)", line.strip()).groups()
            migration[-1][1].append((code, severity, message))
    return plan


def json_plan(document: dict) -> dict:
    return {
        migration["migration"]: [
            (
                operation["description"],
                [(f["code"], f["severity"], f["message"]) for f in operation["findings"]],
            )
            for operation in migration["operations"]
        ]
        for migration in document["plan"]
    }


def codes(plan: dict) -> dict[str, list[str]]:
    return {
        label: sorted(code for _, found in operations for code, _, _ in found)
        for label, operations in plan.items()
    }


# safemigrate --plan ----------------------------------------------------------------------


def test_plan_shows_each_risk_with_its_code_and_json_matches(db_alias, scenario):
    scenario("risk_ops")
    risk_ops_with_rows(db_alias)
    out, err, code = run_command("safemigrate", "scenarios", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    human, human_out = parse_plan(out), out
    expected = ON_POSTGRES if connections[db_alias].vendor == "postgresql" else PORTABLE
    assert codes(human) == expected
    out, _, code = run_command("safemigrate", "scenarios", "--plan", "--json", database=db_alias)
    document = json.loads(out)
    assert code == 0
    assert json_plan(document) == human
    findings = {
        (m["migration"], f["code"]): f
        for m in document["plan"]
        for o in m["operations"]
        for f in o["findings"]
    }
    dropped = findings["scenarios.0002_remove_field", "ML101"]
    assert dropped == {
        "code": "ML101",
        "severity": "danger",
        "message": "Drops column note of scenarios_widget (3 rows): its data is lost.",
        "hint": risks.RISKS["ML101"].hint,
        "table": "scenarios_widget",
        "column": "note",
        "rows": 3,
        "rows_exact": True,
        "rows_lower_bound": False,
        "data_loss": True,
        "acknowledged": "notes were copied to the archive in release 41",
        "origin": "project",
        "muted": False,
    }
    assert (
        "        acknowledged: notes were copied to the archive in release 41"
        in human_out.splitlines()
    )
    table = findings["scenarios.0003_delete_model", "ML102"]
    assert (table["table"], table["column"], table["rows"], table["data_loss"]) == (
        "scenarios_old",
        None,
        2,
        True,
    )
    assert findings["scenarios.0012_add_not_null", "ML307"]["severity"] == "danger"
    assert findings["scenarios.0004_narrow_field", "ML103"]["data_loss"] is True
    assert not connections[db_alias].introspection.table_names().count("scenarios_device")


def test_demo_project_plan_on_a_ledger_with_rows(db_alias):
    migrate(db_alias, "ledger", "0001")
    execute(db_alias, "INSERT INTO ledger_account (name) VALUES ('Acme')")
    [(account,)] = execute(db_alias, "SELECT id FROM ledger_account")
    for amount in (1, 2):
        execute(
            db_alias,
            "INSERT INTO ledger_entry (account_id, amount, memo, created) VALUES (%s, %s, 'm', %s)",
            [account, amount, timezone.now()],
        )
    out, err, code = run_command("safemigrate", "ledger", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    human = parse_plan(out)
    assert codes(human) == {
        "ledger.0002_entry_email": ["ML405"],
        "ledger.0003_backfill_email": ["ML501"],
        "ledger.0004_remove_entry_memo": ["ML101", "ML403"],
        "ledger.0005_normalise_account_names": ["ML201", "ML501"],
    }
    assert (
        "ML101",
        "danger",
        "Drops column memo of ledger_entry (2 rows): its data is lost.",
    ) in human["ledger.0004_remove_entry_memo"][0][1]
    out, _, _ = run_command("safemigrate", "ledger", "--plan", "--json", database=db_alias)
    assert json_plan(json.loads(out)) == human


def test_a_fresh_database_has_only_harmless_findings_on_new_tables(db_alias):
    out, _, code = run_command("safemigrate", "ledger", "--plan", "--json", database=db_alias)
    assert code == 0
    document = json.loads(out)
    [dropped] = [
        f
        for m in document["plan"]
        for o in m["operations"]
        for f in o["findings"]
        if f["code"] == "ML101"
    ]
    assert (dropped["severity"], dropped["data_loss"], dropped["rows"]) == ("info", False, 0)
    assert "new table" in dropped["message"]
    assert not [
        f
        for m in document["plan"]
        for o in m["operations"]
        for f in o["findings"]
        if f["code"].startswith(("ML3", "ML4"))
    ]


# Backward plans (what rollback reads) -----------------------------------------------------


def test_backward_plan_findings(db_alias, scenario):
    scenario("risk_rollback")
    migrate(db_alias, "scenarios")
    execute(
        db_alias,
        "INSERT INTO scenarios_widget (name, colour) VALUES ('a', 'red'), ('b', ''), ('c', '')",
    )
    execute(db_alias, "INSERT INTO scenarios_extra (name) VALUES ('x'), ('y')")
    connection = connections[db_alias]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan([("scenarios", "0001_initial")])
    described = planning.describe_plan(plan, connection=connection, loader=executor.loader)
    found = {
        migration.label: [
            [
                (f.code, f.severity, f.table, f.column, f.rows, f.data_loss)
                for f in operation.findings
            ]
            for operation in migration.operations
        ]
        for migration in described
    }
    assert found == {
        "scenarios.0006_irreversible": [[("ML201", "danger", None, None, None, False)]],
        "scenarios.0005_delete_keep": [[("ML105", "warning", "scenarios_keep", None, None, False)]],
        "scenarios.0004_extra": [
            [
                ("ML102", "danger", "scenarios_extra", None, 2, True),
                ("ML404", "warning", "scenarios_extra", None, 2, False),
            ]
        ],
        "scenarios.0003_remove_note": [
            [
                ("ML104", "warning", "scenarios_widget", "note", 3, False),
                ("ML405", "warning", "scenarios_widget", "note", 3, False),
            ]
        ],
        "scenarios.0002_widget_colour": [
            [
                ("ML101", "danger", "scenarios_widget", "colour", 3, True),
                ("ML403", "warning", "scenarios_widget", "colour", 3, False),
            ]
        ],
    }
    messages = [f.message for m in described for o in m.operations for f in o.findings]
    assert "Drops column colour of scenarios_widget (3 rows): its data is lost." in messages
    assert (
        "Re-creates column note of scenarios_widget (3 rows) empty: its old data is not restored."
        in messages
    )
    assert risks.data_loss_findings(described) == [
        risks.LabelledFinding(m.label, o.description, finding)
        for m in described
        for o in m.operations
        for finding in o.findings
        if finding.code in {"ML101", "ML102"}
    ]
    assert applied(db_alias, "scenarios")[-1] == "0006_irreversible"  # nothing was changed


def test_without_a_connection_there_are_no_findings(db_alias):
    executor = MigrationExecutor(connections[db_alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    assert plan
    assert all(not o.findings for m in planning.describe_plan(plan) for o in m.operations)


# Table sizes ---------------------------------------------------------------------------


def test_table_rows_counts_small_tables_exactly(db_alias):
    connection = connections[db_alias]
    execute(db_alias, "CREATE TABLE counted (n integer)")
    assert tablesize.table_rows(connection, "counted") == tablesize.RowCount(0, True)
    execute(db_alias, "INSERT INTO counted (n) VALUES (1), (2), (3)")
    assert tablesize.table_rows(connection, "counted") == tablesize.RowCount(3, True)
    assert tablesize.table_rows(connection, "absent") == tablesize.RowCount(None, False)
    assert tablesize.RowCount(3, True).describe() == "3 rows"


def forget_statistics(alias: str, table: str) -> None:
    """No statistics for ``table`` on PostgreSQL: its counters reset once this session's are in.

    ``n_live_tup`` would otherwise reach the table's size whenever the server flushes them.
    The caller turns autovacuum off for the table before filling it.
    """
    if connections[alias].vendor == "postgresql":
        execute(alias, "SELECT pg_stat_force_next_flush()")  # flushed before the server answers
        execute(alias, "SELECT pg_stat_reset_single_table_counters(%s::regclass)", [table])


def test_table_rows_above_the_limit_without_statistics_is_a_lower_bound(db_alias):
    connection = connections[db_alias]
    options = " WITH (autovacuum_enabled = false)" if connection.vendor == "postgresql" else ""
    execute(db_alias, f"CREATE TABLE counted (n integer){options}")
    execute(db_alias, "INSERT INTO counted (n) VALUES " + ", ".join(f"({n})" for n in range(20)))
    forget_statistics(db_alias, "counted")
    bounded = tablesize.table_rows(connection, "counted", limit=5)
    assert bounded == tablesize.RowCount(6, False, lower_bound=True)
    assert bounded.describe() == "more than 5 rows"
    execute(db_alias, "ANALYZE counted")
    assert tablesize.table_rows(connection, "counted", limit=5) == tablesize.RowCount(20, False)


@POSTGRES_ONLY
def test_a_table_grown_since_its_last_analyze_is_sized_by_its_live_rows(db_alias):
    """It kept the size of its last ANALYZE: 20,000 rows grown to 2 M graded a warning."""
    execute(db_alias, "CREATE TABLE counted (n integer) WITH (autovacuum_enabled = false)")
    execute(db_alias, "INSERT INTO counted SELECT generate_series(1, 20)")
    execute(db_alias, "SELECT pg_stat_force_next_flush()")  # else counted again after ANALYZE
    execute(db_alias, "ANALYZE counted")
    execute(db_alias, "INSERT INTO counted SELECT generate_series(1, 100)")
    execute(db_alias, "SELECT pg_stat_force_next_flush()")  # flushed before the server answers
    before = pg_scans(db_alias, "counted")
    rows = tablesize.table_rows(connections[db_alias], "counted", limit=5)
    assert rows == tablesize.RowCount(120, False)
    assert pg_scans(db_alias, "counted") == before  # sized without reading it


def test_a_loss_of_a_table_known_only_to_be_big_is_not_given_a_number(db_alias, scenario, settings):
    """It said '~10,001 rows, estimate' in the data-loss summary and the refusal."""
    scenario("risk_ops")
    migrate(db_alias, "scenarios", "0002")
    if connections[db_alias].vendor == "postgresql":
        execute(db_alias, "ALTER TABLE scenarios_old SET (autovacuum_enabled = false)")
    execute(
        db_alias,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10005) "
        "INSERT INTO scenarios_old (name) SELECT 'x' FROM n",
    )
    forget_statistics(db_alias, "scenarios_old")  # nothing but a count
    out, err, code = run_command(
        "safemigrate", "scenarios", "0003", "--plan", "--json", database=db_alias
    )
    assert (code, err) == (0, "")
    [dropped] = [
        f
        for m in json.loads(out)["plan"]
        for o in m["operations"]
        for f in o["findings"]
        if f["code"] == "ML102"
    ]
    assert (dropped["rows"], dropped["rows_exact"], dropped["rows_lower_bound"]) == (
        10_001,
        False,
        True,
    )
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    argv = ("safemigrate", "scenarios", "0003", "--noinput", "--yes")
    _, err, code = run_command(*argv, database=db_alias)
    assert code == 3
    assert "table scenarios_old (more than 10,000 rows)" in err
    assert "10,001" not in err


def pg_scans(alias: str, table: str) -> tuple[int, int, int]:
    """(seq_scan, seq_tup_read, idx_scan) of a table, after flushing this session's stats."""
    execute(alias, "SELECT pg_stat_force_next_flush()")  # flushed before the server answers
    other = raw_connection(alias)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                "WHERE relname = %s",
                [table],
            )
            return cursor.fetchone()
    finally:
        other.close()


@POSTGRES_ONLY
def test_a_million_row_table_gets_the_planner_estimate_and_is_never_scanned(db_alias, scenario):
    scenario("risk_ops")
    migrate(db_alias, "scenarios", "0001")
    execute(
        db_alias,
        "INSERT INTO scenarios_widget (name, size, note, quantity) "
        "SELECT 'w' || g, g, '', g FROM generate_series(1, 1000000) g",
    )
    execute(db_alias, "ANALYZE scenarios_widget")
    before = pg_scans(db_alias, "scenarios_widget")
    out, err, code = run_command("safemigrate", "scenarios", "--plan", "--json", database=db_alias)
    rows = tablesize.table_rows(connections[db_alias], "scenarios_widget")
    assert (
        pg_scans(db_alias, "scenarios_widget") == before
    )  # neither the plan nor table_rows read it
    assert code == 0, err
    assert not rows.exact
    assert rows.count > 900_000
    findings = {
        (m["migration"], f["code"]): f
        for m in json.loads(out)["plan"]
        for o in m["operations"]
        for f in o["findings"]
    }
    index = findings["scenarios.0006_add_index", "ML301"]
    assert (index["rows"], index["rows_exact"], index["severity"]) == (rows.count, False, "danger")
    assert f"(~{rows.count:,} rows, estimate)" in index["message"]
    dropped = findings["scenarios.0002_remove_field", "ML101"]
    assert (dropped["rows"], dropped["data_loss"]) == (rows.count, True)
    # The measure would have seen a read: a bounded count of 10 rows is one sequential scan.
    execute(db_alias, "SELECT count(*) FROM (SELECT 1 FROM scenarios_widget LIMIT 10) t")
    assert pg_scans(db_alias, "scenarios_widget")[0] == before[0] + 1


# Blocking codes and acknowledgements ------------------------------------------------------


def test_migrators_own_migrations_are_a_packages_and_never_blocked(db_alias, settings):
    """migrator's own pending migration (after an upgrade of migrator) comes first in every
    plan: its findings are an installed package's, whatever migrator is installed from,
    and no BLOCKING_RISKS code holds it back; no project can change it."""
    own = "0005_migrationhash_fake_unknown"  # a RunPython: ML501
    assert run_command("migrate", "migrator", "0004", database=db_alias)[2] == 0
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML501"]}

    out, err, code = run_command("safemigrate", "migrator", "--plan", database=db_alias)

    assert (code, err) == (0, "")
    assert f"migrator.{own}" in out
    assert "ML501 info: RunPython forget_unrecorded_fakes" in out
    assert "ML501 in migrator (1 finding): migrator is an installed package" in out
    assert run_command("safemigrate", "migrator", "--yes", database=db_alias)[2] == 0
    assert applied(db_alias, "migrator")[-1] == own


def test_blocking_risks_stop_plan_and_run_unless_acknowledged(db_alias, scenario, settings):
    scenario("risk_ops")
    risk_ops_with_rows(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML101"]}  # acknowledged
    assert run_command("safemigrate", "scenarios", "0002", "--plan", database=db_alias)[2] == 0
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML101", "ML102"]}
    out, err, code = run_command("safemigrate", "scenarios", "0003", "--plan", database=db_alias)
    assert code == 3
    assert "ML102 danger: Drops table scenarios_old (2 rows)" in out  # the plan is still shown
    assert "Blocked by MIGRATOR['BLOCKING_RISKS']: ML102 in scenarios.0003_delete_model" in err
    assert "ML101 in" not in err
    out, err, code = run_command(
        "safemigrate", "scenarios", "0003", "--plan", "--json", database=db_alias
    )
    document = json.loads(out)  # what a CI job reads: the plan, and why it fails
    assert (code, document["exit_code"], document["outcome"]) == (3, 3, "refused")
    assert document["error"].startswith("Blocked by MIGRATOR['BLOCKING_RISKS']: ML102 in ")
    assert [m["migration"] for m in document["plan"]][-1] == "scenarios.0003_delete_model"
    _, err, code = run_command("safemigrate", "scenarios", "0003", database=db_alias)
    assert code == 3
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    refused = Run.objects.using(db_alias).get(outcome="refused")
    assert "ML102" in refused.error
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML101"]}
    migrate(db_alias, "scenarios", "0002")
    run = Run.objects.using(db_alias).filter(outcome="succeeded").first()
    assert {
        "migration": "scenarios.0002_remove_field",
        "code": "ML101",
        "severity": "danger",
        "table": "scenarios_widget",
        "column": "note",
        "rows": 3,
        "acknowledged": "notes were copied to the archive in release 41",
    } in run.details["risks"]


def finding_codes(document: dict) -> dict[str, list[str]]:
    return {
        migration["migration"]: [
            finding["code"]
            for operation in migration["operations"]
            for finding in operation["findings"]
        ]
        for migration in document["plan"]
    }


def test_the_after_deploy_stage_has_no_finding_about_the_old_code(db_alias, scenario, settings):
    """No old code runs in --stage after-deploy (docs/zero-downtime.md): a drop there is no
    ML403/ML404, and BLOCKING_RISKS on them does not refuse the stage the docs prescribe.
    Without --stage the old code may run beside the plan: they stay."""
    scenario("risk_ops")
    risk_ops_with_rows(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML403", "ML404"]}
    target = ("scenarios", "0003", "--allow-data-loss")
    out, err, code = run_command("safemigrate", *target, "--plan", "--json", database=db_alias)
    assert code == 3, err
    assert finding_codes(json.loads(out)) == {
        "scenarios.0002_remove_field": ["ML101", "ML403"],
        "scenarios.0003_delete_model": ["ML102", "ML404"],
    }
    after = ("--stage", "after-deploy")
    out, err, code = run_command(
        "safemigrate", *target, *after, "--plan", "--json", database=db_alias
    )
    assert (code, err) == (0, "")
    assert finding_codes(json.loads(out)) == {
        "scenarios.0002_remove_field": ["ML101"],
        "scenarios.0003_delete_model": ["ML102"],
    }
    out, err, code = run_command("safemigrate", *target, *after, database=db_alias)
    assert (code, err) == (0, "")
    assert "ML403" not in out
    assert applied(db_alias, "scenarios") == [
        "0001_initial",
        "0002_remove_field",
        "0003_delete_model",
    ]


def test_every_code_is_documented():
    documented = set(re.findall(r"^\| (ML\d{3}) \|", DOCS.read_text(), flags=re.M))
    assert documented == set(risks.RISKS)


# PostgreSQL lock_timeout and retries ------------------------------------------------------


def lock_widgets(blocker) -> int:
    with blocker.cursor() as cursor:  # a transaction is open: the lock stays held
        cursor.execute("LOCK TABLE scenarios_widget IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@POSTGRES_ONLY
def test_lock_timeout_retries_then_exits_5_naming_the_blocker(
    db_alias, scenario, settings, blocker
):
    scenario("risk_lock")
    migrate(db_alias, "scenarios", "0001")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 2}
    pid = lock_widgets(blocker)
    events = []
    with pytest.raises(MigrationFailed) as failed:
        runner.safemigrate(
            "scenarios", "0002", options=RunOptions(database=db_alias), progress=events.append
        )
    assert failed.value.exit_code == 5
    message = str(failed.value)
    assert f"pid {pid} ('blocking report', idle in transaction, query started " in message
    assert "on scenarios_widget" in message
    assert "in 3 attempt(s)" in message
    retries = [event for event in events if event.action == "retry"]
    assert [event.data["attempt"] for event in retries] == [1, 2]
    assert all(event.data["blockers"][0]["pid"] == pid for event in retries)
    # Nothing half-applied: the first operation (on an unlocked table) was rolled back too.
    assert applied(db_alias, "scenarios") == ["0001_initial"]
    assert "flag" not in table_columns(db_alias, "scenarios_note")
    run = Run.objects.using(db_alias).get(outcome="failed")
    assert run.failed_migration == "scenarios.0002_alter_both"
    assert f"pid {pid}" in run.error
    settings.MIGRATOR = {**settings.MIGRATOR, "LOCK_RETRIES": 0}
    _, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert f"blocked by pid {pid}" in err
    blocker.rollback()
    assert "size" not in table_columns(db_alias, "scenarios_widget")


def safemigrate_releasing_at_retry(db_alias, blocker, attempt: int):
    """Migrate scenarios to 0002, the blocker letting go at the given retry; report, events."""
    events = []

    def release(event):
        events.append(event)
        if event.action == "retry" and event.data["attempt"] == attempt:
            blocker.rollback()

    report = runner.safemigrate(
        "scenarios", "0002", options=RunOptions(database=db_alias), progress=release
    )
    return report, events


@POSTGRES_ONLY
def test_the_run_succeeds_when_the_blocker_lets_go_during_the_retries(
    db_alias, scenario, settings, blocker
):
    scenario("risk_lock")
    migrate(db_alias, "scenarios", "0001")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 3}
    lock_widgets(blocker)

    report, events = safemigrate_releasing_at_retry(db_alias, blocker, 1)
    assert report.outcome == "succeeded"
    assert [event.data["attempt"] for event in events if event.action == "retry"] == [1]
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_alter_both"]
    # The migration ran with its own lock_timeout, which did not outlive its transaction.
    assert execute(db_alias, "SELECT text FROM scenarios_note") == [("200ms",)]
    assert execute(db_alias, "SHOW lock_timeout") == [("0",)]


@POSTGRES_ONLY
def test_a_non_atomic_migration_retries_the_blocked_statement_alone(
    db_alias, scenario, settings, blocker
):
    scenario("risk_lock")
    migrate(db_alias, "scenarios", "0002")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 2}
    pid = lock_widgets(blocker)
    events = []
    with pytest.raises(MigrationFailed) as failed:
        runner.safemigrate(
            "scenarios", options=RunOptions(database=db_alias), progress=events.append
        )
    message = str(failed.value)
    assert "scenarios.0003_not_atomic could not get its locks within lock_timeout 0.2s" in message
    assert f"in 3 attempt(s); blocked by pid {pid} ('blocking report'" in message
    assert "That statement had no effect" in message
    retries = [event for event in events if event.action == "retry"]
    assert [event.data["attempt"] for event in retries] == [1, 2]
    assert all(event.data["blockers"][0]["pid"] == pid for event in retries)
    blocker.rollback()
    assert applied(db_alias, "scenarios")[-1] == "0002_alter_both"
    assert "weight" not in table_columns(db_alias, "scenarios_widget")
    # The session's own timeouts are back once the migration is over.
    assert execute(db_alias, "SHOW lock_timeout") == [("0",)]


@POSTGRES_ONLY
def test_statement_timeout_stops_a_long_statement_without_retrying(db_alias, scenario, settings):
    scenario("risk_lock")
    migrate(db_alias, "scenarios", "0003")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_STATEMENT_TIMEOUT": 0.1, "LOCK_RETRIES": 3}
    events = []
    with pytest.raises(MigrationFailed) as failed:
        runner.safemigrate(
            "scenarios", options=RunOptions(database=db_alias), progress=events.append
        )
    assert "canceling statement due to statement timeout" in str(failed.value)
    assert not [event for event in events if event.action == "retry"]
    assert applied(db_alias, "scenarios")[-1] == "0003_not_atomic"
    assert execute(db_alias, "SHOW statement_timeout") == [("0",)]


def test_a_fresh_demo_database_shows_no_warning_about_djangos_own_migrations(db_alias):
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    risks_section = out[: out.index("  Applying ")]
    assert "auth." not in risks_section
    assert "contenttypes." not in risks_section
    # The project's own irreversible step is still one to review; its RunPython on its
    # new tables, and Django's own, are information (listed with -v 2).
    assert risks_section.startswith("Risks in this plan: 1 to review (warning or danger), ")
    assert "ML201 warning: Raw Python operation: cannot be rolled back." in risks_section
    document = json.loads(run_command("safemigrate", "--plan", "--json", database=db_alias)[0])
    assert document["plan"] == []


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"axes": "loud"}, "MIGRATOR['APP_RISKS'] is {'axes': 'loud'}: 'axes' must be one of"),
        (["axes"], "MIGRATOR['APP_RISKS'] is ['axes']: must be a dict of app label to"),
    ],
)
def test_app_risks_is_validated(settings, value, named):
    settings.MIGRATOR = {**settings.MIGRATOR, "APP_RISKS": value}
    with pytest.raises(ImproperlyConfigured) as raised:
        get_settings()
    assert named in str(raised.value)


def test_the_join_tables_of_many_to_many_fields_count_with_their_model(db_alias, scenario):
    """Django makes and drops a model's many-to-many join tables with its own table: a
    DeleteModel, or undoing a CreateModel, drops their rows too."""
    scenario("risk_join_tables")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (id) VALUES (1), (2), (3)")
    execute(db_alias, "INSERT INTO scenarios_tag (id) VALUES (1), (2)")
    execute(
        db_alias,
        "INSERT INTO scenarios_tag_widgets (tag_id, widget_id) "
        "SELECT scenarios_tag.id, scenarios_widget.id FROM scenarios_tag, scenarios_widget",
    )
    dropped = "{table} ({rows} rows): its rows are lost."

    out, err, code = run_command("safemigrate", "scenarios", "--plan", "--json", database=db_alias)

    assert (code, err) == (0, "")
    [planned] = json.loads(out)["plan"]
    [operation] = planned["operations"]
    assert [f["message"] for f in operation["findings"] if f["code"] == "ML102"] == [
        f"Drops table {dropped.format(table='scenarios_tag', rows=2)}",
        f"Drops table {dropped.format(table='scenarios_tag_widgets', rows=6)}",
    ]

    out, err, code = run_command(
        "rollback", "scenarios", "zero", "--plan", "--json", database=db_alias
    )

    assert (code, err) == (0, "")
    lost = {(f["table"], f["rows"]) for f in json.loads(out)["data_loss"]}
    assert lost == {("scenarios_widget", 3), ("scenarios_tag", 2), ("scenarios_tag_widgets", 6)}

    migrate(db_alias, "scenarios")
    out, err, code = run_command(
        "rollback", "scenarios", "0001", "--plan", "--json", database=db_alias
    )

    assert (code, err) == (0, "")
    [planned] = json.loads(out)["plan"]
    [operation] = planned["operations"]
    assert [(f["code"], f["table"]) for f in operation["findings"]] == [
        ("ML105", "scenarios_tag"),
        ("ML105", "scenarios_tag_widgets"),
    ]


def test_a_table_the_rollback_re_creates_first_gets_no_lock_or_running_code_findings(
    db_alias, scenario
):
    """Undoing a DeleteModel brings the table back empty before the undos of the changes
    made to it earlier: ML401 said the running code used the old name of a column there."""
    scenario("risk_recreated")
    migrate(db_alias, "scenarios")

    out, err, code = run_command(
        "rollback", "scenarios", "0001", "--plan", "--json", database=db_alias
    )

    assert (code, err) == (0, "")
    found = {
        m["migration"]: [
            [(f["code"], f["severity"], f["rows"]) for f in o["findings"]] for o in m["operations"]
        ]
        for m in json.loads(out)["plan"]
    }
    assert found == {
        "scenarios.0003_delete_order": [[("ML105", "warning", None)]],
        "scenarios.0002_rename_amount": [[("ML101", "info", 0)], [], []],
    }


def test_a_column_the_plan_adds_then_drops_holds_no_data_at_stake(db_alias, scenario, settings):
    """An upgrade over two releases, one adding a column and one dropping it: dropping it
    loses nothing that exists now, forwards or (re-created empty first) backwards."""
    scenario("risk_added_then_dropped")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (name) VALUES ('a'), ('b')")
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    again = (
        "Drops column scratch of scenarios_widget that this plan creates first: it holds no "
        "data that exists now."
    )

    out, err, code = run_command("safemigrate", "scenarios", "--plan", "--json", database=db_alias)

    assert (code, err) == (0, "")
    dropped = json.loads(out)["plan"][1]["operations"][0]["findings"]
    assert [(f["code"], f["severity"], f["data_loss"], f["message"]) for f in dropped] == [
        ("ML101", "info", False, again)
    ]
    out, err, code = run_command(
        "safemigrate", "scenarios", "--yes", "--no-backup", database=db_alias
    )
    assert (code, err) == (0, ""), out  # production: no --allow-data-loss needed

    out, err, code = run_command(
        "rollback", "scenarios", "0001", "--plan", "--json", database=db_alias
    )

    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["data_loss"] == []
    undone = {
        f["code"]: f for m in document["plan"] for o in m["operations"] for f in o["findings"]
    }
    assert undone["ML101"]["message"] == again
    assert undone["ML104"]["rows"] == 2  # re-created empty first, by undoing 0003
    out, err, code = run_command(
        "rollback", "scenarios", "0001", "--yes", "--no-backup", database=db_alias
    )
    assert (code, err) == (0, ""), out
    assert applied(db_alias, "scenarios") == ["0001_initial"]


def test_findings_after_a_rename_name_the_table_as_renamed_and_count_its_rows(db_alias, scenario):
    scenario("risk_rename_then_alter")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (name) VALUES ('a'), ('b'), ('c')")
    execute(db_alias, "ANALYZE scenarios_widget")

    def findings(*argv: str) -> list[tuple]:
        out, err, code = run_command(*argv, "--plan", "--json", database=db_alias)
        assert (code, err) == (0, "")
        return [
            (f["code"], f["table"], f["rows"], f["message"].split(")")[0] + ")")
            for m in json.loads(out)["plan"]
            for o in m["operations"]
            for f in o["findings"]
            if f["code"] in {"ML402", "ML103"}
        ]

    assert findings("safemigrate", "scenarios") == [
        ("ML402", "scenarios_widget", 3, "Renames table scenarios_widget (3 rows)"),
        ("ML103", "scenarios_gadget", 3, "Narrows column name of scenarios_gadget (3 rows)"),
    ]
    migrate(db_alias, "scenarios", "--allow-data-loss")
    assert findings("rollback", "scenarios", "0001") == [
        ("ML402", "scenarios_gadget", 3, "Renames table scenarios_gadget (3 rows)"),
    ]


@POSTGRES_ONLY
def test_an_indexed_varchar_made_text_rebuilds_its_pattern_index_in_place(db_alias, scenario):
    scenario("risk_pattern_index")
    migrate(db_alias, "scenarios", "0001")
    execute(db_alias, "INSERT INTO scenarios_widget (name, code) VALUES ('a', 'a'), ('b', 'b')")

    out, err, code = run_command("safemigrate", "scenarios", "--sql", database=db_alias)
    assert (code, err) == (0, "")
    assert "CONCURRENTLY" not in out
    # What the finding is about, as Django builds it: Django 4.2 drops the index for good.
    rebuilt = compat.REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE
    assert ("text_pattern_ops" in out) is rebuilt
    assert "varchar_pattern_ops" not in out  # code, made longer, keeps its index
    out, err, code = run_command("safemigrate", "scenarios", "--plan", "--json", database=db_alias)

    assert (code, err) == (0, "")
    [planned] = json.loads(out)["plan"]
    findings = [f for o in planned["operations"] for f in o["findings"]]
    rebuilding = (
        "ML301",
        "Builds the pattern-ops index of name of scenarios_widget (2 rows) again, for its "
        "new type, without CONCURRENTLY.",
    )
    assert [(f["code"], f["message"]) for f in findings if f["code"] == "ML301"] == (
        [rebuilding] if rebuilt else []
    )
