from django.db import migrations, models


def count_runs(apps, schema_editor):
    """Reads migrator's table: the state must have its models on the run that creates it."""
    apps.get_model("migrator", "Run").objects.using(schema_editor.connection.alias).count()


class Migration(migrations.Migration):
    initial = True
    dependencies = [("migrator", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="RunNote",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("run", models.ForeignKey("migrator.Run", on_delete=models.CASCADE)),
            ],
        ),
        migrations.RunPython(count_runs, migrations.RunPython.noop),
    ]
