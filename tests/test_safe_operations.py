"""Safe operations, and timeouts on every statement of a migration (non-atomic included)."""

import re
import subprocess

import pytest
from django.db import connections, migrations, models
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader

from migrator import runner
from migrator.exceptions import MigrationFailed
from migrator.models import Run
from migrator.runner import RunOptions
from tests.scenarios.steps import CHECK_CONDITION
from tests.test_risks import lock_widgets, migrate, safemigrate_releasing_at_retry
from tests.utils import (
    ROOT,
    applied,
    child_env,
    django_admin,
    execute,
    killed_when_paused,
    raw_connection,
    run_child,
    run_command,
    start_child,
    table_columns,
)

POSTGRES_ONLY = pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)

# What makemigrations writes for the models the safe_ops migrations end with: the safe
# migrations must leave the very same project state (no change to detect).
PLAIN = {
    "0002_book_title_index": migrations.AddIndex(
        "book", models.Index(fields=["title"], name="book_title_idx")
    ),
    "0003_book_isbn_unique": migrations.AddConstraint(
        "book", models.UniqueConstraint(fields=["isbn"], name="book_isbn_uniq")
    ),
    "0004_book_pages_check": migrations.AddConstraint(
        "book",
        models.CheckConstraint(
            **{CHECK_CONDITION: models.Q(pages__gte=0)}, name="book_pages_gte_0"
        ),
    ),
    "0005_book_author": [
        migrations.AddField(
            "book", "author", models.ForeignKey("scenarios.author", models.CASCADE, null=True)
        ),
        migrations.AddField(
            "book",
            "signed_by",
            models.OneToOneField(
                "scenarios.author", models.SET_NULL, null=True, related_name="signed_book"
            ),
        ),
    ],
    "0006_book_pages_not_null": migrations.AlterField("book", "pages", models.IntegerField()),
}


def books_with_rows(alias: str) -> None:
    migrate(alias, "scenarios", "0001")
    execute(alias, "INSERT INTO scenarios_author (name) VALUES ('Le Guin'), ('Lem')")
    for number in range(3):
        execute(
            alias,
            "INSERT INTO scenarios_book (title, isbn, pages) VALUES (%s, %s, %s)",
            [f"book {number}", f"isbn-{number}", 100 + number],
        )


def constraints(alias: str) -> dict[str, dict]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, "scenarios_book")


def pages_nullable(alias: str) -> bool:
    connection = connections[alias]
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, "scenarios_book")
    return next(column.null_ok for column in description if column.name == "pages")


def not_valid(alias: str) -> list[tuple]:
    """INVALID indexes and NOT VALID constraints (PostgreSQL), none after a safe operation."""
    return execute(
        alias,
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE NOT i.indisvalid AND pg_table_is_visible(c.oid) "
        "UNION ALL SELECT conname FROM pg_constraint WHERE NOT convalidated",
    )


def test_each_safe_operation_leaves_the_plain_operations_project_state(scenario):
    scenario("safe_ops")
    loader = MigrationLoader(None, ignore_no_migrations=True)
    plain = loader.project_state(("scenarios", "0001_initial"))
    for name, operations in PLAIN.items():
        for operation in operations if isinstance(operations, list) else [operations]:
            operation.state_forwards("scenarios", plain)
        safe = loader.project_state(("scenarios", name))
        changes = MigrationAutodetector(safe, plain).changes(graph=loader.graph)
        assert changes == {}, f"after {name}: {changes}"


def test_safe_operations_apply_roll_back_and_apply_again(db_alias, scenario):
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", "0006")
    found = constraints(db_alias)
    assert (found["book_title_idx"]["index"], found["book_title_idx"]["columns"]) == (
        True,
        ["title"],
    )
    assert (found["book_isbn_uniq"]["unique"], found["book_isbn_uniq"]["columns"]) == (
        True,
        ["isbn"],
    )
    assert found["book_pages_gte_0"]["check"]
    assert [c for c in found.values() if c["foreign_key"] == ("scenarios_author", "id")]
    assert [c for c in found.values() if c["index"] and c["columns"] == ["author_id"]]
    assert [c for c in found.values() if c["unique"] and c["columns"] == ["signed_by_id"]]
    assert [c for c in found.values() if c["foreign_key"] and c["columns"] == ["signed_by_id"]]
    assert not pages_nullable(db_alias)
    if connections[db_alias].vendor == "postgresql":
        assert not_valid(db_alias) == []
        assert not [name for name in found if name.endswith("_notnull")]
        assert execute(
            db_alias,
            "SELECT contype FROM pg_constraint WHERE conname = 'book_isbn_uniq'",
        ) == [("u",)]  # a real constraint, attached to the concurrently built index
        assert execute(
            db_alias,
            "SELECT contype FROM pg_constraint WHERE conrelid = 'scenarios_book'::regclass "
            "AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attname = "
            "'signed_by_id' AND attrelid = 'scenarios_book'::regclass)] ORDER BY contype",
        ) == [("f",), ("u",)]  # as a OneToOneField has it: a foreign key and UNIQUE
    out, err, code = run_command("rollback", "scenarios", "0001", database=db_alias)
    assert code == 0, err
    found = constraints(db_alias)
    assert not {"book_title_idx", "book_isbn_uniq", "book_pages_gte_0"} & set(found)
    assert "author_id" not in table_columns(db_alias, "scenarios_book")
    assert pages_nullable(db_alias)
    migrate(db_alias, "scenarios", "0006")
    assert applied(db_alias, "scenarios")[-1] == "0006_book_pages_not_null"
    assert "book_title_idx" in constraints(db_alias)


def test_a_safe_operation_in_an_atomic_migration(db_alias, scenario):
    scenario("safe_ops")
    migrate(db_alias, "scenarios", "0006")
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    if connections[db_alias].vendor == "sqlite":  # the plain AddIndex
        assert code == 0, err
        assert "book_isbn_idx" in constraints(db_alias)
        return
    assert code == 5
    assert (
        "AddIndexSafely cannot run inside a transaction on PostgreSQL. "
        "Set atomic = False on its migration." in err
    )
    assert applied(db_alias, "scenarios")[-1] == "0006_book_pages_not_null"


@POSTGRES_ONLY  # the lock codes (ML3xx) are PostgreSQL's
def test_plan_shows_the_safe_form_in_the_hint(db_alias, scenario):
    scenario("risk_ops")
    migrate(db_alias, "scenarios", "0001")
    out, err, code = run_command("safemigrate", "scenarios", "0010", "--plan", database=db_alias)
    assert code == 0, err
    for code, safe_form in [
        ("ML301", "AddIndexSafely"),
        ("ML302", "AddUniqueSafely"),
        ("ML303", "AddCheckSafely"),
        ("ML304", "AddForeignKeySafely"),
        ("ML305", "SetNotNullSafely"),
    ]:
        hint = rf"\n  {code} in scenarios \(\d+ findings?\): Use migrator\.operations\.{safe_form} "
        assert re.search(hint, out), (code, out)


@POSTGRES_ONLY
def test_safe_operations_are_not_reported_as_blocking(db_alias, scenario):
    scenario("safe_ops")
    books_with_rows(db_alias)
    out, err, code = run_command("safemigrate", "scenarios", "0006", "--plan", database=db_alias)
    assert code == 0, err
    assert "ML30" not in out
    migrate(db_alias, "scenarios", "0004")
    out, err, code = run_command("safemigrate", "scenarios", "0005", "--sql", database=db_alias)
    assert (code, err) == (0, "")
    assert "UNIQUE" not in re.search(r"ADD COLUMN \"signed_by_id\"[^;]*;", out)[0]
    assert re.search(
        r'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "\w+" ON "scenarios_book"', out
    )
    assert re.search(r'ADD CONSTRAINT "\w+" UNIQUE USING INDEX', out)


@POSTGRES_ONLY
def test_a_key_to_a_character_key_gets_its_pattern_index_concurrently(db_alias, scenario):
    scenario("safe_fk_char_key")
    migrate(db_alias, "scenarios", "0001")
    out, err, code = run_command("safemigrate", "scenarios", "--sql", database=db_alias)
    assert (code, err) == (0, "")
    assert re.search(r"CREATE INDEX CONCURRENTLY IF NOT EXISTS \S+_like\" ON", out), out

    migrate(db_alias, "scenarios", "0002")
    connection = connections[db_alias]
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "scenarios_item")
    indexes = sorted(n for n, c in found.items() if c["index"] and c["columns"] == ["code_id"])
    assert [name.endswith("_like") for name in indexes] == [False, True]  # as AddField makes
    assert not_valid(db_alias) == []


@POSTGRES_ONLY
def test_a_validation_that_finds_bad_rows_leaves_no_constraint_behind(db_alias, scenario):
    """A NOT VALID check left behind would reject the running code's NULLs."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", "0005")
    execute(db_alias, "INSERT INTO scenarios_book (title, pages) VALUES ('no pages', NULL)")

    out, err, code = run_command("safemigrate", "scenarios", "0006", database=db_alias)
    assert code == 5, err
    assert "0006_book_pages_not_null" in err
    assert not_valid(db_alias) == []
    assert pages_nullable(db_alias)
    execute(db_alias, "INSERT INTO scenarios_book (title, pages) VALUES ('old code', NULL)")
    execute(db_alias, "UPDATE scenarios_book SET pages = 0 WHERE pages IS NULL")
    assert run_command("safemigrate", "scenarios", "0006", database=db_alias)[2] == 0
    assert not pages_nullable(db_alias)
    assert not_valid(db_alias) == []


@POSTGRES_ONLY
def test_a_unique_build_that_finds_duplicates_leaves_no_index_behind(db_alias, scenario):
    """A READY but INVALID unique index left behind would reject the running code's
    duplicate writes while the migration is not applied."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", "0002")
    early, late = raw_connection(db_alias), raw_connection(db_alias)
    watcher = raw_connection(db_alias)
    watcher.autocommit = True
    try:
        with early.cursor() as cursor:  # an open write: the build waits for it first
            cursor.execute("INSERT INTO scenarios_book (title, isbn) VALUES ('early', 'e')")
        child = start_child(
            db_alias,
            "safemigrate",
            "scenarios",
            "0003",
            MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.safe_ops",
            MIGRATOR_TEST_SETTINGS='{"PG_LOCK_TIMEOUT": 300}',
        )
        wait_for_phase(watcher, child, "waiting for writers before build")
        with late.cursor() as cursor:  # after that wait began: unseen by the build
            cursor.execute("INSERT INTO scenarios_book (title, isbn) VALUES ('dup', 'isbn-0')")
        early.rollback()
        wait_for_phase(watcher, child, "waiting for writers before validation")  # READY
        late.commit()  # the validation finds the duplicate
        _, err = child.communicate(timeout=300)
    finally:
        early.close()
        late.close()
        watcher.close()
    assert child.returncode == 5, err
    assert 'duplicate key value violates unique constraint "book_isbn_uniq"' in err
    assert not_valid(db_alias) == []
    assert "book_isbn_uniq" not in constraints(db_alias)
    assert applied(db_alias, "scenarios")[-1] == "0002_book_title_index"
    execute(db_alias, "INSERT INTO scenarios_book (title, isbn) VALUES ('old code', 'isbn-1')")


def wait_for_phase(watcher, child: subprocess.Popen, phase: str) -> None:
    """Until the child's concurrent build of book_isbn_uniq is in ``phase``."""
    with watcher.cursor() as cursor:
        while True:
            assert child.poll() is None, child.stderr.read()
            cursor.execute(
                "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c "
                "ON c.oid = p.index_relid WHERE c.relname = 'book_isbn_uniq' AND p.phase = %s",
                [phase],
            )
            if cursor.fetchone() is not None:
                return


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("migration", "target", "gone"),
    [
        ("0003_book_isbn_unique", "0002", "book_isbn_uniq"),
        ("0004_book_pages_check", "0003", "book_pages_gte_0"),
        ("0005_book_author", "0004", "author_id"),
    ],
)
def test_a_rollback_killed_after_the_reverse_committed_is_finished_by_the_next(
    db_alias, scenario, migration, target, gone
):
    """The reverse of a non-atomic migration commits before its record: a kill -9 in
    between leaves it applied with its objects gone, and the next rollback runs it again."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", migration[:4])
    killed_when_paused(
        start_child(
            db_alias,
            "rollback",
            "scenarios",
            target,
            "--noinput",
            "--yes",
            "--allow-data-loss",
            MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.safe_ops",
            PAUSE_AT=f"scenarios.{migration}:reverse",
        )
    )
    present = set(constraints(db_alias)) | set(table_columns(db_alias, "scenarios_book"))
    assert gone not in present
    assert applied(db_alias, "scenarios")[-1] == migration
    out = run_command("migrationstatus", database=db_alias)[0]
    run = Run.objects.using(db_alias).filter(command="rollback").first()
    assert (
        f"  warning: rollback run #{run.pk} stopped in scenarios.{migration}, which is not "
        "atomic: what it did stays, not recorded as unapplied; run rollback again to finish "
        "it, or undo it by hand.\n"
    ) in out

    out, err, code = run_command("rollback", "scenarios", target, database=db_alias)
    assert code == 0, err
    assert applied(db_alias, "scenarios")[-1].startswith(target)
    assert run_command("safemigrate", "scenarios", migration[:4], database=db_alias)[2] == 0
    present = set(constraints(db_alias)) | set(table_columns(db_alias, "scenarios_book"))
    assert gone in present


@POSTGRES_ONLY
def test_a_run_killed_in_a_non_atomic_migration_is_named_with_what_to_do(db_alias, scenario):
    """The check it added stays, not recorded as applied, rejecting the old code's rows:
    rollback --last has nothing to undo, so the plan and the status say what to do."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", "0003")
    killed_when_paused(
        start_child(
            db_alias,
            "safemigrate",
            "scenarios",
            "0004",
            MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.safe_ops",
            PAUSE_AT="scenarios.0004_book_pages_check",
        )
    )
    assert "book_pages_gte_0" in constraints(db_alias)
    assert applied(db_alias, "scenarios")[-1] == "0003_book_isbn_unique"

    out, err, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert code == 0, err
    run = Run.objects.using(db_alias).filter(command="safemigrate").first()
    left = (
        f"safemigrate run #{run.pk} stopped in scenarios.0004_book_pages_check, which is not "
        "atomic: what it did stays, not recorded as applied; run safemigrate again to finish "
        "it, or undo it by hand."
    )
    assert f"  Undoes safemigrate run #{run.pk} (interrupted).\n  Nothing to roll back.\n" in out
    assert f"Warning: {left} This rollback does not undo it.\n" in out
    assert (run.outcome, run.failed_migration) == ("interrupted", "scenarios.0004_book_pages_check")
    assert run.error == (
        "The process ended without finishing the run (killed or lost). It stopped in "
        "scenarios.0004_book_pages_check, which is not atomic: what it did stays, not recorded "
        "as applied; run safemigrate again to finish it, or undo it by hand."
    )
    out, err, code = run_command("migrationstatus", database=db_alias)
    assert f"\n  warning: {left}\n" in out

    assert run_command("safemigrate", "scenarios", "0004", database=db_alias)[2] == 0
    assert "warning" not in run_command("migrationstatus", database=db_alias)[0]
    assert not_valid(db_alias) == []


# Acceptance 3: a concurrent index build killed -9 mid-way ---------------------------


@POSTGRES_ONLY
def test_a_concurrent_build_killed_mid_way_is_finished_by_the_next_run(db_alias, scenario):
    scenario("safe_ops")
    books_with_rows(db_alias)
    writer = raw_connection(db_alias)
    watcher = raw_connection(db_alias)
    watcher.autocommit = True
    try:
        with writer.cursor() as cursor:  # an open write: the build waits for it, INVALID
            cursor.execute("INSERT INTO scenarios_book (title) VALUES ('in flight')")
        child = subprocess.Popen(
            django_admin("safemigrate", "scenarios", "0002"),
            env=child_env(
                db_alias, MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.safe_ops"
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        build = wait_for_build(watcher, child)
        child.kill()  # SIGKILL, mid-build
        child.wait(timeout=30)
        with watcher.cursor() as cursor:  # its server process dies too (as on a lost client)
            cursor.execute("SELECT pg_terminate_backend(%s)", [build])
            while True:  # until it is gone; the INVALID index stays
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [build])
                if cursor.fetchone() is None:
                    break
        writer.rollback()
    finally:
        writer.close()
        watcher.close()
    assert not_valid(db_alias) == [("book_title_idx",)]
    done = run_child(
        db_alias,
        "safemigrate",
        "scenarios",
        "0002",
        MIGRATOR_TEST_SCENARIO="tests.scenarios.migration_sets.safe_ops",
    )
    assert done.returncode == 0, done.stderr
    assert not_valid(db_alias) == []
    assert constraints(db_alias)["book_title_idx"]["index"]
    assert applied(db_alias, "scenarios")[-1] == "0002_book_title_index"


@POSTGRES_ONLY
def test_a_concurrent_build_waiting_for_an_old_snapshot_names_it_and_leaves_nothing(
    db_alias, scenario, settings, blocker
):
    """CREATE INDEX CONCURRENTLY waits for every older snapshot of the database, even one
    of a transaction that never touched the table: that session is the one to name."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 1}
    with blocker.cursor() as cursor:  # a report reading another table, its snapshot kept
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT count(*) FROM scenarios_author")
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()

    out, err, code = run_command("safemigrate", "scenarios", "0002", database=db_alias)
    assert code == 5, err
    assert re.search(
        rf"in 2 attempt\(s\); blocked by pid {pid} \('blocking report', idle in transaction, "
        r"transaction started [^)]+\) with a snapshot older than the index build\. That "
        r"statement had no effect",
        err,
    ), err
    assert not_valid(db_alias) == []  # the INVALID index the build left is gone
    assert applied(db_alias, "scenarios")[-1] == "0001_initial"
    blocker.rollback()
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    assert constraints(db_alias)["book_title_idx"]["index"]


@POSTGRES_ONLY
def test_a_concurrent_build_stopped_by_a_writer_says_it_left_an_invalid_index(
    db_alias, scenario, settings, blocker
):
    """A writer's open transaction stops both the build and the DROP of what it left."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 0}
    with blocker.cursor() as cursor:
        cursor.execute("UPDATE scenarios_book SET pages = pages + 1")
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()

    out, err, code = run_command("safemigrate", "scenarios", "0002", database=db_alias)
    assert code == 5, err
    assert f"blocked by pid {pid} ('blocking report', idle in transaction" in err
    assert "on scenarios_book. That statement left the INVALID index " in err
    assert '"book_title_idx", which every write keeps up to date until the next run' in err
    assert not_valid(db_alias) == [("book_title_idx",)]
    blocker.rollback()
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    assert not_valid(db_alias) == []
    assert constraints(db_alias)["book_title_idx"]["index"]


@POSTGRES_ONLY
def test_a_concurrent_drop_stopped_by_a_reader_says_it_left_an_invalid_index(
    db_alias, scenario, settings, blocker
):
    """DROP INDEX CONCURRENTLY marks the index INVALID, commits, then waits for the table's
    users: stopped in that wait, it had an effect, and the next rollback finishes it."""
    scenario("safe_ops")
    books_with_rows(db_alias)
    migrate(db_alias, "scenarios", "0002")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 0}
    with blocker.cursor() as cursor:  # a request that read a book, idle in its transaction
        cursor.execute("SELECT count(*) FROM scenarios_book")
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()

    out, err, code = run_command("rollback", "scenarios", "0001", database=db_alias)
    assert code == 5, err
    assert f"blocked by pid {pid} ('blocking report', idle in transaction" in err
    assert (
        'That statement marked the index "book_title_idx" INVALID (no query uses it) before '
        "its wait; it is idempotent, and running it again drops the index; the earlier" in err
    )
    assert "had no effect" not in err
    assert not_valid(db_alias) == [("book_title_idx",)]
    assert applied(db_alias, "scenarios")[-1] == "0002_book_title_index"
    blocker.rollback()
    assert run_command("rollback", "scenarios", "0001", database=db_alias)[2] == 0
    assert "book_title_idx" not in constraints(db_alias)
    assert applied(db_alias, "scenarios")[-1] == "0001_initial"


def wait_for_build(watcher, child: subprocess.Popen) -> int:
    """The server pid of the child's concurrent build, once its INVALID index exists."""
    with watcher.cursor() as cursor:
        while True:
            assert child.poll() is None, child.stderr.read()
            cursor.execute(
                "SELECT a.pid FROM pg_stat_activity a, pg_index i JOIN pg_class c "
                "ON c.oid = i.indexrelid WHERE c.relname = 'book_title_idx' "
                "AND NOT i.indisvalid AND a.query LIKE 'CREATE INDEX CONCURRENTLY%%'"
            )
            row = cursor.fetchone()
            if row is not None:
                return row[0]


# Timeouts bound every statement ----------------------------------------------------


@POSTGRES_ONLY
def test_a_runsql_in_a_non_atomic_migration_is_stopped_retried_and_reported(
    db_alias, scenario, settings, blocker
):
    scenario("nonatomic_sql")
    migrate(db_alias, "scenarios", "0001")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 3}
    pid = lock_widgets(blocker)

    report, events = safemigrate_releasing_at_retry(db_alias, blocker, 2)
    assert report.outcome == "succeeded"
    retries = [event for event in events if event.action == "retry"]
    assert [event.data["attempt"] for event in retries] == [1, 2]
    assert all(event.data["blockers"][0]["pid"] == pid for event in retries)
    assert retries[0].message.startswith(
        f"Lock timeout, that statement had no effect; blocked by pid {pid} ('blocking report', "
    )
    assert applied(db_alias, "scenarios")[-1] == "0002_touch_widgets"


@POSTGRES_ONLY
def test_a_runsql_in_a_non_atomic_migration_exits_5_naming_the_blocker(
    db_alias, scenario, settings, blocker
):
    scenario("nonatomic_sql")
    migrate(db_alias, "scenarios", "0001")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_LOCK_TIMEOUT": 0.2, "LOCK_RETRIES": 1}
    pid = lock_widgets(blocker)
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert f"in 2 attempt(s); blocked by pid {pid} ('blocking report'" in err
    blocker.rollback()
    assert applied(db_alias, "scenarios")[-1] == "0001_initial"


@POSTGRES_ONLY
def test_statement_timeout_bounds_non_atomic_statements_but_not_concurrent_builds(
    db_alias, scenario, settings
):
    scenario("nonatomic_sql")
    migrate(db_alias, "scenarios", "0002")
    execute(db_alias, "INSERT INTO scenarios_widget (name) VALUES ('a'), ('b')")
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_STATEMENT_TIMEOUT": 0.1}
    with pytest.raises(MigrationFailed) as failed:
        runner.safemigrate("scenarios", options=RunOptions(database=db_alias))
    # 0003 built its index (0.6 s) past the 0.1 s timeout; 0004's 0.5 s sleep was stopped.
    assert "canceling statement due to statement timeout" in str(failed.value)
    assert failed.value.exit_code == 5
    assert applied(db_alias, "scenarios")[-1] == "0003_slow_index"
    assert not_valid(db_alias) == []
    assert execute(db_alias, "SHOW statement_timeout") == [("0",)]
