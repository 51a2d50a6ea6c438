"""migrator installed with Django alone: no optional package is needed until it is used.

``pip install django-migrator`` brings Django and nothing else, so a project that has not
installed dj-database-url, a PostgreSQL driver, pyrage or django-storages must still run
every command on SQLite. The child hides those packages (an import of them fails, as when
they are not installed) and uses settings of its own, not the suite's.
"""

import json
import subprocess
import sys

from tests.utils import ROOT

OPTIONAL = ["dj_database_url", "psycopg2", "psycopg", "pyrage", "storages", "boto3", "pgserver"]

PROJECT = """
import importlib, json, pkgutil, sys

for name in {optional!r}:
    sys.modules[name] = None  # "import name" raises ImportError, as when not installed

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "migrator",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    TEMPLATES=[
        {{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {{
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            }},
        }}
    ],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}}}},
    MIGRATOR={{"BACKUP_DIR": sys.argv[2], **json.loads(sys.argv[3])}},
    USE_TZ=True,
    DEBUG=True,  # a laptop: no production guard
)
django.setup()
import migrator

for module in pkgutil.walk_packages(migrator.__path__, "migrator."):
    importlib.import_module(module.name)
from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", *sys.argv[4:]])
"""


def run_project(tmp_path, *command: str, migrator_settings: dict | None = None):
    script = tmp_path / "project.py"
    script.write_text(PROJECT.format(optional=OPTIONAL))
    return subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "db.sqlite3"),
            str(tmp_path / "backups"),
            json.dumps(migrator_settings or {}),
            *command,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_every_module_imports_and_the_commands_run_with_django_alone(tmp_path):
    for command in [
        ("safemigrate", "--noinput"),
        ("backup",),
        ("migrationstatus", "--check"),
        ("verifymigrations",),
        ("rollback", "--last", "--noinput"),
        ("migrationhistory",),
    ]:
        done = run_project(tmp_path, *command)
        assert (done.returncode, done.stderr) == (0, ""), command
    assert "#2 rollback " in run_project(tmp_path, "migrationhistory").stdout


def test_a_direct_database_url_without_dj_database_url_says_what_to_install(tmp_path):
    direct = {"DIRECT_DATABASES": {"default": "postgres://deploy@db.internal:5432/app"}}
    done = run_project(tmp_path, "safemigrate", migrator_settings=direct)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "CommandError: MIGRATOR['DIRECT_DATABASES']: the URL for 'default' needs "
        "dj-database-url, which is not installed; install it (pip install "
        "'django-migrator[postgres]'), or name an alias of DATABASES. Fix "
        "MIGRATOR['DIRECT_DATABASES'] in your settings.\n"
    )
    assert not (tmp_path / "db.sqlite3").exists()
