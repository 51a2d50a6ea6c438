"""RunPython steps that scenario migrations share: pause points, counters, failures."""

import os
import sys

import django
from django.db import migrations

# Django 5.1 renamed CheckConstraint(check=...) to condition=... (6.0 removed check=).
CHECK_CONDITION = "condition" if django.VERSION >= (5, 1) else "check"


def pause_here(label: str):
    """A step that, when ``PAUSE_AT`` names it, prints PAUSED and waits for a line on stdin.

    Tests use it to know exactly where a child process is before killing it.
    """

    def step(apps, schema_editor):
        if os.environ.get("PAUSE_AT") == label:
            sys.__stdout__.write("PAUSED\n")  # the real stdout: --json redirects sys.stdout
            sys.__stdout__.flush()
            sys.stdin.readline()

    return step


def count_run(table: str):
    """A step that inserts one row into ``table``, so a test can count how often it ran."""

    def step(apps, schema_editor):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (note) VALUES ('ran')")

    return step


def fail(apps, schema_editor):
    if os.environ.get("FAIL_WITH") == "exit":  # what a helper that calls sys.exit does
        sys.exit(0)
    raise RuntimeError("scenario step failed on purpose")


def noop(apps, schema_editor):
    pass


def leak_password(apps, schema_editor):
    """Fail quoting the configured password bare, as ``password=...`` and inside a URL."""
    password = schema_editor.connection.settings_dict.get("PASSWORD") or "nopassword"
    raise RuntimeError(
        f"auth failed for {password}; dsn host=db.internal password={password} "
        f"user=app; retry postgres://app:{password}@db.internal/app"
    )


def create_item_table():
    """The round-trip scenarios' table, made with raw SQL so that the model-less scenarios
    app has no model changes."""
    return migrations.RunSQL(
        "CREATE TABLE rt_item (id integer PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)",
        "DROP TABLE rt_item",
    )
