# A squash of a squash (Django 6.0+): it replaces 0001_squashed_0002_second and 0003.
from django.db import migrations


class Migration(migrations.Migration):
    replaces = [("scenarios", "0001_squashed_0002_second"), ("scenarios", "0003_third")]
    operations = [
        migrations.RunSQL(
            "CREATE TABLE integrity_first (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_first",
        ),
        migrations.RunSQL(
            "CREATE TABLE integrity_second (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_second",
        ),
        migrations.RunSQL(
            "CREATE TABLE compat_third (id integer PRIMARY KEY)",
            "DROP TABLE compat_third",
        ),
    ]
