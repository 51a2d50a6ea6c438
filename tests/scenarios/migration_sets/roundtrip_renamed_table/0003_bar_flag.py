"""SQLite remakes the table to add a column: the indexes get names from the new one."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_rename_table")]
    operations = [migrations.AddField("bar", "flag", models.BooleanField(default=False))]
