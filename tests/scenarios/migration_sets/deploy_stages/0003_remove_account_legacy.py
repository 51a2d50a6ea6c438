"""Drops a column the old code reads and writes: after_deploy, inferred (not marked)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_account_nickname")]
    operations = [migrations.RemoveField("account", "legacy")]
