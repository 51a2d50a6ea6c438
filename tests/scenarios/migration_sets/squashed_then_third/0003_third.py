# After the squash of 0001 and 0002: a run on a fresh database applies the squash, then this.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_second")]
    operations = [
        migrations.RunSQL(
            "CREATE TABLE integrity_third (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_third",
        ),
    ]
