"""A non-atomic migration that stops after its first operation: the column stays."""

from django.db import migrations, models

from tests.scenarios.steps import fail, pause_here


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AddField("widget", "size", models.IntegerField(null=True)),
        migrations.RunPython(pause_here("scenarios.0002_half_done")),
        migrations.RunPython(fail),
        migrations.AddField("widget", "colour", models.IntegerField(null=True)),
    ]
