"""A RunSQL in a non-atomic migration: it waits for whoever locks the table."""

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.RunSQL("UPDATE scenarios_widget SET name = name", migrations.RunSQL.noop)
    ]
