# Schema through RunSQL only: the model-less scenarios app then has no model changes.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = []
    operations = [
        migrations.RunSQL(
            "CREATE TABLE integrity_first (id integer PRIMARY KEY, note varchar(20))",
            "DROP TABLE integrity_first",
        ),
    ]
