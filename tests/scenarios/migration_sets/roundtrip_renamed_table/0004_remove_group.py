"""Undone, the key and its index come back with names from the new table name."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0003_bar_flag")]
    operations = [migrations.RemoveField("bar", "group")]
