# The squash of 0001 and 0002, as squashmigrations writes it (RunSQL only, no model state).
from django.db import migrations


class Migration(migrations.Migration):
    replaces = [("scenarios", "0001_initial"), ("scenarios", "0002_second")]
    operations = [
        migrations.RunSQL(
            "CREATE TABLE integrity_first (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_first",
        ),
        migrations.RunSQL(
            "CREATE TABLE integrity_second (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_second",
        ),
    ]
