"""Additive, but after 0003 in the graph: held back with it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0003_remove_account_legacy")]
    operations = [
        migrations.AddField("account", "email", models.CharField(max_length=50, null=True))
    ]
