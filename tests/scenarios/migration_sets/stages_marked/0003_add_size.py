"""Inferred before_deploy; a test overrides it in MIGRATOR["STAGE_OVERRIDES"]."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_drop_name_marked_before")]
    operations = [
        migrations.AddField("widget", "size", models.IntegerField(null=True)),
        migrations.RunSQL("SELECT 1", migrations.RunSQL.noop),
    ]
