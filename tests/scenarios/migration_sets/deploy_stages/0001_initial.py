"""The table the old code reads and writes (tests/old_code.py): id, name, legacy."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Account",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
                ("legacy", models.CharField(max_length=50, null=True)),
            ],
        ),
    ]
