"""``DIRECT_DATABASES`` naming a database URL: migrator works through it, not the alias.

The alias itself points at a database that does not exist, so a command that touched it
would fail: everything (the migrations, the run audit) lands in the database of the URL,
recorded under the alias ``<alias>-direct``.
"""

import importlib.util
import json
from urllib.parse import urlsplit, urlunsplit

import django
import pytest
from django.db import connections

from migrator.models import Run
from tests.conftest import _admin_execute, drop_test_database
from tests.pg import server_url
from tests.utils import applied, run_child, run_command

BASIC = {"MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic"}


def database_url(alias: str) -> str:
    """A URL of the database under test, as a deploy's environment would give it."""
    name = connections[alias].settings_dict["NAME"]
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{name}"
    return urlunsplit(urlsplit(server_url())._replace(path=f"/{name}"))


@pytest.fixture
def alias_elsewhere(db_alias, tmp_path):
    """The alias under test pointed at a database that does not exist; put back after."""
    connection = connections[db_alias]
    name = connection.settings_dict["NAME"]
    url = database_url(db_alias)
    connection.close()
    absent = "migrator_absent" if connection.vendor == "postgresql" else tmp_path / "no" / "db"
    connection.settings_dict["NAME"] = str(absent)
    yield db_alias, url
    connection.settings_dict["NAME"] = name
    forget_direct(db_alias)


def forget_direct(alias: str) -> None:
    direct = f"{alias}-direct"
    if direct in connections.settings:
        connections[direct].close()
        del connections[direct]
        del connections.settings[direct]


@pytest.fixture
def absent_direct(db_alias, tmp_path):
    """A URL for the alias under test whose database does not exist."""
    if connections[db_alias].vendor == "sqlite":
        url = f"sqlite:///{tmp_path / 'no' / 'db'}"
    else:
        url = urlunsplit(urlsplit(server_url())._replace(path="/migrator_absent"))
    yield db_alias, url
    forget_direct(db_alias)


def test_a_url_in_direct_databases_is_where_migrator_works(alias_elsewhere, settings, scenario):
    alias, url = alias_elsewhere
    scenario("basic")
    settings.MIGRATOR = {**settings.MIGRATOR, "DIRECT_DATABASES": {alias: url}}
    out, err, code = run_command("safemigrate", database=alias)
    assert code == 0, err
    assert "Applying scenarios.0004_widget_weight" in out
    direct = f"{alias}-direct"
    assert applied(direct, "scenarios")[-1] == "0004_widget_weight"
    assert Run.objects.using(direct).get(command="safemigrate").database == direct
    out, err, code = run_command("migrationstatus", database=alias)
    assert (code, err) == (0, "")
    assert direct in out


@pytest.mark.parametrize("command", ["safemigrate", "migrationstatus", "migrationhistory"])
def test_a_direct_database_that_cannot_be_used_is_the_one_named(absent_direct, settings, command):
    alias, url = absent_direct
    settings.MIGRATOR = {**settings.MIGRATOR, "DIRECT_DATABASES": {alias: url}}
    out, err, code = run_command(command, database=alias)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        f"Cannot use database '{alias}-direct' (MIGRATOR['DIRECT_DATABASES'] for '{alias}'): "
    )
    check = {
        "sqlite": "MIGRATOR['DIRECT_DATABASES'] is right and the file is an intact SQLite database",
        "postgresql": "the server is up and MIGRATOR['DIRECT_DATABASES'] is right",
    }[connections[alias].vendor]
    assert err.endswith(f"Check that {check}.\n")
    assert connections[alias].introspection.table_names() == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.parametrize("command", ["safemigrate", "migrationstatus"])
def test_a_direct_database_that_is_another_database_is_refused(db_alias, settings, command):
    """A typo in the direct URL's database name migrated that database, and the status
    said all was applied, while the app's had nothing."""
    other = "migrator_other_direct"
    _admin_execute(db_alias, f'CREATE DATABASE "{other}"')
    url = urlunsplit(urlsplit(server_url())._replace(path=f"/{other}"))
    settings.MIGRATOR = {**settings.MIGRATOR, "DIRECT_DATABASES": {db_alias: url}}
    try:
        out, err, code = run_command(command, database=db_alias)
        tables = connections[f"{db_alias}-direct"].introspection.table_names()
    finally:
        forget_direct(db_alias)
        drop_test_database(db_alias, other)
    name = connections[db_alias].settings_dict["NAME"]
    assert (code, out) == (1, "")
    assert err == (
        f"MIGRATOR['DIRECT_DATABASES'] sends {db_alias!r} to '{db_alias}-direct', which "
        f"reaches database {other!r}, not {name!r} that {db_alias!r} reaches (or another "
        "server's); make both reach the same database.\n"
    )
    assert tables == []


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
@pytest.mark.skipif(
    importlib.util.find_spec("psycopg_pool") is None or django.VERSION < (5, 1),
    reason="psycopg 3's connection pool (psycopg[pool], Django 5.1+)",
)
def test_a_psycopg_pool_of_one_is_enough(db_alias, scenario):
    """The run lock's and the backup's sessions came from the command's own pool: with a
    pool of one they waited for it, and failed."""
    pool = json.dumps({"min_size": 1, "max_size": 1, "timeout": 5})
    for command in (
        ("safemigrate", "--backup"),
        ("migrationstatus",),
        ("rollback", "--last", "--restore", "--yes"),
    ):
        done = run_child(db_alias, *command, MIGRATOR_TEST_PG_POOL=pool, **BASIC)
        assert done.returncode == 0, (command, done.stderr)
    assert applied(db_alias, "scenarios") == []
