"""A pause point (PAUSE_AT=scenarios.0002_pause), reached on the first apply and the re-apply."""

from django.db import migrations

from tests.scenarios.steps import noop, pause_here


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_create")]
    operations = [migrations.RunPython(pause_here("scenarios.0002_pause"), noop)]
