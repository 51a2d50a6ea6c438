"""Inferred after_deploy, overridden in settings by a test, and explicitly before_deploy."""

from django.db import migrations

from migrator.stages import Stage


class Migration(migrations.Migration):
    stage = Stage.BEFORE_DEPLOY
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.RemoveField("widget", "name")]
