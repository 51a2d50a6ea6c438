# A squash of a squash (Django 6.0+): it replaces 0001_squashed_0002_second and 0003.
from django.db import migrations

TABLES = {
    "integrity_first": "id integer PRIMARY KEY, note varchar(20)",
    "integrity_second": "id integer PRIMARY KEY, note varchar(20)",
    "compat_third": "id integer PRIMARY KEY",
}


class Migration(migrations.Migration):
    replaces = [("scenarios", "0001_squashed_0002_second"), ("scenarios", "0003_third")]
    operations = [
        migrations.RunSQL(
            [f"CREATE TABLE {name} ({columns})" for name, columns in TABLES.items()],
            [f"DROP TABLE {name}" for name in reversed(TABLES)],
        ),
    ]
