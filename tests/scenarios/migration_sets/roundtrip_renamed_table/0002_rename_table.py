"""The table renamed: its indexes keep the names Django derived from the old one."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.AlterModelTable("bar", "rt_bar")]
