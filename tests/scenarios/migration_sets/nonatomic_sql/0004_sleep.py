"""A plain statement slower than a small PG_STATEMENT_TIMEOUT, in a non-atomic migration."""

from django.db import migrations


def sleep(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SELECT pg_sleep(0.5)")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0003_slow_index")]
    operations = [migrations.RunPython(sleep, migrations.RunPython.noop)]
