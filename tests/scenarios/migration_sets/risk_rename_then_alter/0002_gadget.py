"""A table renamed, then altered under its new name, in one plan."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.RenameModel("Widget", "Gadget"),
        migrations.AlterField("gadget", "name", models.CharField(max_length=10)),
    ]
