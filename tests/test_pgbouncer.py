"""Behind a real PgBouncer in transaction pooling: refused at once, or direct through a setting.

A session advisory lock taken through transaction pooling stays with a server session that
goes back to the pool and serves other clients, other runs included: migrator refuses such
a connection before doing anything, naming ``DIRECT_DATABASES``; with it pointing at a
direct alias or URL, concurrent runs through the pooler apply each migration exactly once.
In session pooling the alias mapped to itself is trusted, and is right.
"""

import json

import pytest
from django.db import connections

from migrator.models import Run
from tests import pgbouncer
from tests.test_backup import snapshot
from tests.test_backup_swap import backed_up_then_emptied, databases
from tests.test_direct_databases import database_url
from tests.test_locking import wait_for_line_starting
from tests.utils import applied, execute, killed_when_paused, start_child, wait_for_line

pytestmark = pytest.mark.skipif(pgbouncer.binary() is None, reason=pgbouncer.SKIP_REASON)

BASIC = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"}
DIRECT = {"MIGRATOR_TEST_SETTINGS": json.dumps({"DIRECT_DATABASES": {"default": "direct"}})}
SELF = {"MIGRATOR_TEST_SETTINGS": json.dumps({"DIRECT_DATABASES": {"default": "default"}})}
ORM = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.direct_orm"}
RUNS = 5


@pytest.fixture(scope="module")
def bouncer():
    server = pgbouncer.PgBouncer.start(connections["postgres"].settings_dict)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session_bouncer():
    server = pgbouncer.PgBouncer.start(connections["postgres"].settings_dict, pool_mode="session")
    yield server
    server.stop()


@pytest.fixture
def postgres_alias(db_alias):
    if db_alias != "postgres":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    return db_alias


def through(bouncer, alias: str, *args: str, **env: str):
    """A child command whose 'default' database goes through PgBouncer."""
    return start_child(alias, *args, MIGRATOR_TEST_PGBOUNCER_PORT=str(bouncer.port), **env)


def finish(child) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=300)
    return child.returncode, out, err


def test_runs_through_transaction_pooling_are_refused_naming_the_setting(bouncer, postgres_alias):
    children = [through(bouncer, postgres_alias, "safemigrate", **BASIC) for _ in range(RUNS)]
    for code, out, err in map(finish, children):
        assert (code, out) == (1, ""), err
        assert err == (
            "CommandError: Database 'default' is reached through a connection pooler "
            "(PgBouncer?), where migrator's session lock and timeouts do not hold; set "
            'MIGRATOR["DIRECT_DATABASES"] = {\'default\': "<an alias that connects to '
            'PostgreSQL directly>"}.\n'
        )
    with connections[postgres_alias].cursor() as cursor:
        tables = connections[postgres_alias].introspection.table_names(cursor)
    assert tables == []  # not even django_migrations


@pytest.mark.parametrize("direct", ["alias", "url"])
def test_concurrent_runs_with_the_direct_setting_apply_exactly_once(
    bouncer, postgres_alias, direct
):
    if direct == "alias":
        setting, recorded = DIRECT, "direct"
    else:
        url = json.dumps({"DIRECT_DATABASES": {"default": database_url(postgres_alias)}})
        setting, recorded = {"MIGRATOR_TEST_SETTINGS": url}, "default-direct"
    assert_exactly_once(bouncer, postgres_alias, setting)
    run = Run.objects.using(postgres_alias).get(steps__name="0003_slow_step")
    assert run.database == recorded


def test_session_pooling_is_taken_at_its_word_when_the_alias_maps_to_itself(
    session_bouncer, postgres_alias
):
    """Session pooling keeps a session whole; the client cannot tell it from transaction
    pooling (pool_mode is not visible to it), so the setting says so."""
    child = through(session_bouncer, postgres_alias, "safemigrate", **BASIC)
    assert finish(child)[0] == 1  # refused, as any pooler, until told
    assert_exactly_once(session_bouncer, postgres_alias, SELF)


def assert_exactly_once(bouncer, postgres_alias: str, setting: dict) -> None:
    first = through(
        bouncer,
        postgres_alias,
        "safemigrate",
        **BASIC,
        **setting,
        PAUSE_AT="scenarios.0003_slow_step",
    )
    wait_for_line(first, "PAUSED")  # holds the lock, half-way through the plan
    others = [
        through(bouncer, postgres_alias, "safemigrate", **BASIC, **setting) for _ in range(RUNS - 1)
    ]
    for child in others:
        wait_for_line_starting(child, "Waiting for the migration lock held by")
    first.stdin.write("\n")
    first.stdin.flush()
    results = [finish(child) for child in [first, *others]]
    assert [code for code, _, _ in results] == [0] * RUNS, [err for _, _, err in results]
    assert all("No migrations to apply." in out for _, out, _ in results[1:])
    with connections[postgres_alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scenarios_ledger")  # one row per run of 0003
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT app, name, count(*) FROM django_migrations GROUP BY 1, 2")
        assert {count for *_, count in cursor.fetchall()} == {1}
    assert applied(postgres_alias, "scenarios")[-1] == "0004_widget_weight"


def test_a_restore_through_session_pooling_into_an_empty_database_runs_in_one_transaction(
    session_bouncer, postgres_alias, settings, tmp_path
):
    """The parallel route renames the database, which needs every session in it gone: the
    pooler keeps its server sessions, so the restore does not take it, RESTORE_JOBS or not."""
    backups = tmp_path / "backups"
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(backups)}
    backup_id, before = backed_up_then_emptied(postgres_alias)
    connections[postgres_alias].close()
    for jobs in (None, 2):
        child = through(
            session_bouncer,
            postgres_alias,
            *("restore", backup_id, "--yes", "--force", "--verbosity", "2"),
            MIGRATOR_TEST_BACKUP_DIR=str(backups),
            MIGRATOR_TEST_SETTINGS=json.dumps(
                {"DIRECT_DATABASES": {"default": "default"}, "RESTORE_JOBS": jobs}
            ),
        )
        code, out, err = finish(child)

        assert code == 0, err
        assert "reached through a connection pooler" in out
        assert snapshot(postgres_alias) == before
        assert databases("migrator_restore_") == databases("migrator_replaced_") == []
        connections[postgres_alias].close()


def test_a_data_migration_on_the_default_alias_is_part_of_its_migration(bouncer, postgres_alias):
    """Model.objects in a RunPython uses 'default', the pooled alias: it ran outside the
    migration's transaction, so its update waited for ever on the migration's own lock, and
    its rows outlived a killed run (and were written again by the next)."""
    child = through(
        bouncer,
        postgres_alias,
        "safemigrate",
        **ORM,
        **DIRECT,
        PAUSE_AT="scenarios.0002_flag_notes",
    )
    killed_when_paused(child)
    assert applied(postgres_alias, "scenarios") == ["0001_initial"]
    assert execute(postgres_alias, "SELECT text FROM scenarios_note") == []
    code, _, err = finish(through(bouncer, postgres_alias, "safemigrate", **ORM, **DIRECT))
    assert code == 0, err
    assert execute(postgres_alias, "SELECT text, flag FROM scenarios_note") == [("by 0002", 1)]


def test_testmigrations_through_the_direct_setting_touches_only_its_test_database(
    bouncer, postgres_alias
):
    argv = ("testmigrations", "scenarios", "--noinput")
    code, out, err = finish(through(bouncer, postgres_alias, *argv, **ORM, **DIRECT))
    assert "2 round trip(s): 2 ok" in out, err
    assert code == 2  # the scenarios app has no models: the migrations' state is a change
    assert "scenarios_note" not in connections[postgres_alias].introspection.table_names()
