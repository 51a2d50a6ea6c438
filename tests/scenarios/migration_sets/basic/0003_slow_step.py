from django.db import migrations, models

from tests.scenarios.steps import count_run, noop, pause_here


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_widget_size")]
    operations = [
        # Undone last, after the column is dropped: a rollback paused here is mid-transaction.
        migrations.RunPython(noop, pause_here("scenarios.0003_slow_step:reverse")),
        migrations.AddField("widget", "colour", models.CharField(max_length=20, default="")),
        migrations.RunPython(count_run("scenarios_ledger"), noop),
        migrations.RunPython(pause_here("scenarios.0003_slow_step"), noop),
    ]
