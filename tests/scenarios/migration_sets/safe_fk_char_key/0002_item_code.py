"""A key to a character primary key: PostgreSQL's editor gives it a varchar_pattern_ops
index beside the plain one."""

from django.db import migrations, models

from migrator.operations import AddForeignKeySafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        AddForeignKeySafely(
            "item", "code", models.ForeignKey("scenarios.code", models.CASCADE, null=True)
        )
    ]
