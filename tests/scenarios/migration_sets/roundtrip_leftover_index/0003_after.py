"""A migration after the failing one: the walk goes on to it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_name_index")]
    operations = [migrations.RunSQL("CREATE TABLE rt_later (id integer)", "DROP TABLE rt_later")]
