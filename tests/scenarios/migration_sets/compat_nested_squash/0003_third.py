# Schema through RunSQL only: the model-less scenarios app then has no model changes.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_second")]
    operations = [
        migrations.RunSQL(
            "CREATE TABLE compat_third (id integer PRIMARY KEY)",
            "DROP TABLE compat_third",
        ),
    ]
