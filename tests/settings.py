"""Settings for the test suite: a SQLite alias and a PostgreSQL alias, plus scenario apps.

Child processes started by the tests use the same module; ``MIGRATOR_TEST_TARGET``
(``alias:name``) points their ``default`` database at the database under test.
"""

import json
import os
import tempfile
from pathlib import Path

import dj_database_url

from tests.pg import pgserver_bin_dir, server_url

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "migrator",
    "project.ledger",
    "tests.scenarios",
]

_SCRATCH = Path(tempfile.gettempdir(), "migrator-tests")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_SCRATCH / "unused.sqlite3"),
        "TEST": {"NAME": str(_SCRATCH / "unused-test.sqlite3")},
    },
    "postgres": dj_database_url.parse(server_url()),
}
if os.environ.get("MIGRATOR_TEST_TARGET"):
    _alias, _name = os.environ["MIGRATOR_TEST_TARGET"].split(":", 1)
    DATABASES["default"] = {**DATABASES[_alias], "NAME": _name}
if os.environ.get("MIGRATOR_TEST_SQLITE_TIMEOUT"):  # a locked SQLite file, found sooner
    DATABASES["default"]["OPTIONS"] = {"timeout": float(os.environ["MIGRATOR_TEST_SQLITE_TIMEOUT"])}
if os.environ.get("MIGRATOR_TEST_PASSWORD"):  # the test server trusts local connections
    DATABASES["default"]["PASSWORD"] = os.environ["MIGRATOR_TEST_PASSWORD"]
if os.environ.get("MIGRATOR_TEST_PG_POOL"):  # psycopg 3's pool for 'default', as JSON
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": json.loads(os.environ["MIGRATOR_TEST_PG_POOL"]),
    }
if os.environ.get("MIGRATOR_TEST_PGBOUNCER_PORT"):  # 'default' through PgBouncer
    DATABASES["direct"] = DATABASES["default"]
    DATABASES["default"] = {
        **DATABASES["default"],
        "HOST": "127.0.0.1",
        "PORT": os.environ["MIGRATOR_TEST_PGBOUNCER_PORT"],
        "OPTIONS": {},
        "DISABLE_SERVER_SIDE_CURSORS": True,  # as Django asks behind transaction pooling
    }

if os.environ.get("MIGRATOR_TEST_STORAGE"):  # a child's backups storage (tests/s3.py), as JSON
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "backups": json.loads(os.environ["MIGRATOR_TEST_STORAGE"]),
    }

MIGRATION_MODULES = {
    "scenarios": os.environ.get("MIGRATOR_TEST_SCENARIO", "tests.scenarios.migration_sets.empty"),
    # apps a child treats as having no migrations (--run-syncdb), comma-separated
    **{label: None for label in os.environ.get("MIGRATOR_TEST_UNMIGRATED", "").split(",") if label},
}

MIGRATOR = {
    "ENVIRONMENT": os.environ.get("MIGRATOR_TEST_ENVIRONMENT", "test"),
    "BACKUP_DIR": os.environ.get("MIGRATOR_TEST_BACKUP_DIR", str(_SCRATCH / "backups")),
    # pg_dump must be at least the server's version: the pgserver package's, not /usr/bin's.
    "PG_BIN_DIR": pgserver_bin_dir(),
    # More keys for a child, as JSON: a test of bad settings on the command line.
    **json.loads(os.environ.get("MIGRATOR_TEST_SETTINGS", "{}")),
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
