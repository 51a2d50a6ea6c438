"""A column one release adds and a later one drops (a package upgrade skipping both)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.AddField("widget", "scratch", models.IntegerField(null=True))]
