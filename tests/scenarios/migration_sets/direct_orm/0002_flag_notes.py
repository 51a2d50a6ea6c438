"""A data migration written as most are: the model's default manager, no .using(): on the
default alias, which DIRECT_DATABASES sends elsewhere. It updates the table the migration
has just altered (locked by the migration's transaction until it commits)."""

from django.db import migrations, models

from tests.scenarios.steps import noop, pause_here


def flag_notes(apps, schema_editor):
    Note = apps.get_model("scenarios", "Note")
    Note.objects.create(text="by 0002")
    Note.objects.update(flag=1)


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AddField("note", "flag", models.IntegerField(default=0)),
        migrations.RunPython(flag_notes, noop),
        migrations.RunPython(pause_here("scenarios.0002_flag_notes"), noop),
    ]
