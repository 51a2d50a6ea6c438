"""A column added and filled in the database only: the fill (RunPython) has no reverse, so
this cannot be unapplied; undone in reverse order, the column would be dropped first."""

from django.db import migrations

from tests.scenarios.steps import noop


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(noop),
                migrations.RunSQL(
                    "ALTER TABLE scenarios_widget ADD COLUMN size integer DEFAULT 0",
                    "ALTER TABLE scenarios_widget DROP COLUMN size",
                ),
            ]
        )
    ]
