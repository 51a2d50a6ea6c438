"""A data migration whose reverse does nothing: re-applying it duplicates its row."""

from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("scenarios", "Tag").objects.using(schema_editor.connection.alias).create(
        name="seed"
    )


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_squashed_0002_colour")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
