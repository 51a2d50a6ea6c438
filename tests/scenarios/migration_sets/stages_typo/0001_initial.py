"""A stage spelt with a hyphen: no stage at all."""

from django.db import migrations


class Migration(migrations.Migration):
    stage = "after-deploy"
    operations = [migrations.RunSQL("SELECT 1", migrations.RunSQL.noop)]
