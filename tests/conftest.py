"""Fixtures: every test gets fresh, empty databases, on SQLite and on PostgreSQL."""

import importlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.checks.registry import registry as checks_registry
from django.db import connections

from migrator.backup import drill, swap
from tests.test_children import wait_until
from tests.third_party import THIRD_PARTY_APPS, THIRD_PARTY_SETTINGS
from tests.utils import execute, raw_connection

# A suite started in the background (``cmd &`` in a script) inherits SIGINT ignored, and so
# would every child: Python then installs no KeyboardInterrupt handler, and the Ctrl-C tests
# hang. Children exec with the default disposition when this process handles SIGINT.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SCENARIOS = "tests.scenarios.migration_sets"
SETS = Path(__file__).resolve().parent / "scenarios" / "migration_sets"


def _admin_execute(alias: str, sql: str) -> None:
    """Run CREATE/DROP DATABASE on the server's maintenance database, outside a transaction."""
    conn = raw_connection(alias, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def databases_named(alias: str, *prefixes: str) -> list[str]:
    """The server's databases whose names start with one of ``prefixes``, in order; read
    from the maintenance database, so that no session of the reader's is in them."""
    conn = raw_connection(alias, dbname="postgres")
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT datname FROM pg_database WHERE EXISTS "
                "(SELECT 1 FROM unnest(%s::text[]) p WHERE starts_with(datname, p)) ORDER BY 1",
                [list(prefixes)],
            )
            return [name for (name,) in cursor.fetchall()]
    finally:
        conn.close()


def drop_test_database(alias: str, name: str) -> None:
    """Drop the test's database, and the databases a parallel restore left beside it."""
    leftovers = databases_named(alias, "migrator_replaced_", "migrator_restore_")
    for database in [name, *leftovers]:
        _admin_execute(alias, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def db_alias(request, django_db_blocker, tmp_path) -> Iterator[str]:
    """The alias of a brand-new empty database of each vendor, used by the test."""
    alias = request.param
    connection = connections[alias]
    original = connection.settings_dict["NAME"]
    with django_db_blocker.unblock():
        connection.close()
        if connection.vendor == "sqlite":
            name = str(tmp_path / "db.sqlite3")
        else:
            name = f"migrator_{uuid.uuid4().hex[:12]}"
            _admin_execute(alias, f'CREATE DATABASE "{name}"')
        connection.settings_dict["NAME"] = name
        try:
            yield alias
        finally:
            connections.close_all()
            connection.settings_dict["NAME"] = original
            if connection.vendor == "postgresql":
                drop_test_database(alias, name)


@pytest.fixture
def scenario(settings):
    """Point the scenarios app at one of the migration sets under tests/scenarios."""

    def use(name: str) -> str:
        module = f"{SCENARIOS}.{name}"
        settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "scenarios": module}
        return module

    return use


@pytest.fixture
def third_party_apps(settings) -> Iterator[list[str]]:
    """Install the third-party test project's apps (tests/third_party) for this test.

    Their ``ready()`` registers system checks that outlive the apps: the registry is put
    back afterwards, or a later ``manage.py check`` fails on an app no longer installed.
    """
    registry = checks_registry.registered_checks.copy(), checks_registry.deployment_checks.copy()
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, *THIRD_PARTY_APPS]
    for name, value in THIRD_PARTY_SETTINGS.items():
        setattr(settings, name, value)
    yield THIRD_PARTY_APPS
    checks_registry.registered_checks, checks_registry.deployment_checks = registry


@pytest.fixture
def migration_set(tmp_path, monkeypatch, settings):
    """Copy ``tests/scenarios/migration_sets/<name>`` to a new package and migrate it."""
    packages = []

    def use(name: str, *, without: tuple[str, ...] = (), under: str = "") -> Path:
        package = f"integrity_copy_{uuid.uuid4().hex[:10]}"
        root = tmp_path / under if under else tmp_path
        target = root / package
        shutil.copytree(SETS / name, target, ignore=shutil.ignore_patterns("__pycache__", *without))
        monkeypatch.syspath_prepend(str(root))
        settings.MIGRATION_MODULES = {**settings.MIGRATION_MODULES, "scenarios": package}
        packages.append(package)
        return target

    yield use
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def blocker(db_alias):
    """Another session, as psql or a long report would hold one (PostgreSQL)."""
    connection = raw_connection(db_alias, application_name="blocking report")
    yield connection
    connection.close()


# pg_hba.conf lines that refuse every connection to a new database of the parallel route
# or of a drill, as a file that lists the databases it admits does (a name starting with
# a slash is a regular expression, from PostgreSQL 16 on).
NEW_DATABASES = f"/^({swap.SCRATCH_PREFIX}|{drill.SCRATCH_PREFIX})"
REFUSING_NEW_DATABASES = f"""local {NEW_DATABASES} all reject
host {NEW_DATABASES} all all reject
"""


def refuses_new_databases(alias: str) -> bool:
    """Whether the server, as it has loaded pg_hba.conf, refuses a new database's name."""
    try:
        raw_connection(alias, dbname=f"{swap.SCRATCH_PREFIX}probe").close()
    except connections[alias].Database.Error as exc:
        return "pg_hba.conf rejects" in str(exc)
    raise AssertionError("a database that does not exist let the test in")


def hba_reloaded(alias: str, hba: Path, text: str, *, refusing: bool) -> None:
    """pg_hba.conf written, and the server found to have loaded it (a reload is signalled)."""
    hba.write_text(text)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_reload_conf()")
    wait_until(lambda: refuses_new_databases(alias) == refusing, what="pg_hba.conf reloaded")


@pytest.fixture
def new_databases_refused(db_alias) -> Iterator[None]:
    """The server refusing the new databases of parallel restores and drills, and admitting
    them after (its own server's pg_hba.conf: the test's database is admitted all along)."""
    connection = connections[db_alias]
    if connection.pg_version < 160000:
        pytest.skip("pg_hba.conf matches database names by pattern from PostgreSQL 16 on")
    with connection.cursor() as cursor:
        cursor.execute("SHOW hba_file")
        hba = Path(cursor.fetchone()[0])
    if not os.access(hba, os.W_OK):
        pytest.skip("the server's pg_hba.conf cannot be written from here")
    original = hba.read_text()
    hba_reloaded(db_alias, hba, REFUSING_NEW_DATABASES + original, refusing=True)
    try:
        yield
    finally:
        hba_reloaded(db_alias, hba, original, refusing=False)


@pytest.fixture
def owner_with_a_superusers_extension(db_alias) -> Iterator[str]:
    """The PostgreSQL database of ``db_alias`` owned by a new role that is not a superuser
    (an application's), with an extension (vector, commented) that a superuser installed
    in it, which only a superuser may drop; the connection logs in as that role meanwhile.
    Yields the role."""
    connection = connections[db_alias]
    name, superuser = connection.settings_dict["NAME"], connection.settings_dict["USER"]
    role = f"migrator_owner_{uuid.uuid4().hex[:8]}"
    _admin_execute(db_alias, f'CREATE ROLE "{role}" LOGIN')
    _admin_execute(db_alias, f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    execute(db_alias, "CREATE EXTENSION vector")
    execute(db_alias, "COMMENT ON EXTENSION vector IS 'similarity search'")
    connections.close_all()
    connection.settings_dict["USER"] = role
    try:
        yield role
    finally:
        connections.close_all()
        connection.settings_dict["USER"] = superuser
        drop_test_database(db_alias, name)  # before its owner
        _admin_execute(db_alias, f'DROP ROLE "{role}"')
