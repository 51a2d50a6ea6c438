"""A table made with raw SQL, so that the model-less scenarios app has no model changes."""

from django.db import migrations


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.RunSQL(
            "CREATE TABLE rt_item (id integer PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)",
            "DROP TABLE rt_item",
        )
    ]
