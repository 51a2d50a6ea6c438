"""The order table of docs/zero-downtime.md's examples: the test writes them after this one."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("total", models.IntegerField(null=True)),
                ("created", models.DateTimeField()),
            ],
        ),
    ]
