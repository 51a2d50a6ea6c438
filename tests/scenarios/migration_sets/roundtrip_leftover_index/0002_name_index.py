"""A reverse that leaves the index behind: re-applying then fails to create it again."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_create")]
    operations = [
        migrations.RunSQL("CREATE INDEX rt_item_name_idx ON rt_item (name)", migrations.RunSQL.noop)
    ]
