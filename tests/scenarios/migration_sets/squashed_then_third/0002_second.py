# Schema through RunSQL only: the model-less scenarios app then has no model changes.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "CREATE TABLE integrity_second (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_second",
        ),
    ]
