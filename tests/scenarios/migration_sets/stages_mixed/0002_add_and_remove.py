"""Adds one column and drops another the old code reads: the two stages in one migration."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AddField("widget", "size", models.IntegerField(null=True)),
        migrations.RemoveField("widget", "name"),
    ]
