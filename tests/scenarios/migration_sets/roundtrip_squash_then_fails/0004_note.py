"""After the failing one, on the squash's model: the walk needs its state."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0003_seed")]
    operations = [migrations.AddField("tag", "note", models.TextField(null=True))]
