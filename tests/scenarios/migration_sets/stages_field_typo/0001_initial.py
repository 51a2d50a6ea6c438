"""A table; tests/test_stages.py adds a migration whose operation misspells a field."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
                ("note", models.CharField(max_length=50, null=True)),
            ],
        ),
    ]
