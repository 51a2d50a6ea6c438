"""Batch functions that the batch_* scenario migrations share: counters, pauses, failures."""

import os
import sys

from django.db import migrations, models, transaction
from django.db.models import F

_batches_done = 0  # per process: the children that pause run one migration each


def bump(apps, schema_editor, batch):
    """Add one to each row's counter, so a test sees every row processed exactly once.

    With ``PAUSE_AT_BATCH=n``, print PAUSED after batch n has committed and wait for a
    line on stdin: the test then knows the child sits between two batches.
    """
    batch.update(times=F("times") + 1)
    _pause_at(schema_editor)


def unbump(apps, schema_editor, batch):
    """``bump`` undone, pausing as it does."""
    batch.update(times=F("times") - 1)
    _pause_at(schema_editor)


def _pause_at(schema_editor) -> None:
    global _batches_done
    _batches_done += 1
    if os.environ.get("PAUSE_AT_BATCH") == str(_batches_done):
        transaction.on_commit(_pause, using=schema_editor.connection.alias)


def leak_credentials(apps, schema_editor, batch):
    """Fail the way a careless library does: with a connection URL and its password."""
    password = schema_editor.connection.settings_dict.get("PASSWORD") or "nopassword"
    raise RuntimeError(f"could not reach postgres://app:{password}@db.internal:5432/app")


def add_rows(count: int):
    def step(apps, schema_editor):
        Item = apps.get_model("scenarios", "Item")
        Item.objects.using(schema_editor.connection.alias).bulk_create(
            [Item() for _ in range(count)]
        )

    return step


def create_item() -> migrations.CreateModel:
    return migrations.CreateModel(
        name="Item",
        fields=[
            ("id", models.AutoField(primary_key=True)),
            ("times", models.IntegerField(default=0)),
        ],
    )


def _pause() -> None:
    sys.__stdout__.write("PAUSED\n")  # the real stdout: --json redirects sys.stdout
    sys.__stdout__.flush()
    sys.stdin.readline()
