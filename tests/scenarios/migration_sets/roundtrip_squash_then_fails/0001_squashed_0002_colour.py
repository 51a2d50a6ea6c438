"""The squash of 0001 and 0002, as squashmigrations writes it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    replaces = [("scenarios", "0001_initial"), ("scenarios", "0002_colour")]
    operations = [
        migrations.CreateModel(
            "Tag",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=20, unique=True)),
                ("colour", models.CharField(max_length=10, null=True)),
            ],
        ),
    ]
