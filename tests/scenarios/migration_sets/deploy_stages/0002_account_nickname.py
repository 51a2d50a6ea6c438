"""Additive: the old code ignores a new nullable column (before_deploy, inferred)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AddField("account", "nickname", models.CharField(max_length=50, null=True))
    ]
