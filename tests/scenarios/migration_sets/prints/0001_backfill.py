"""A data migration that prints what it did, as many do."""

from django.db import migrations


def backfill(apps, schema_editor):
    print("Backfilled 0 rows")  # noqa: T201  (the point of the scenario)


class Migration(migrations.Migration):
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
