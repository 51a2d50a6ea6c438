"""A model with a many-to-many field: Django makes (and drops) its join table with it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel("Widget", [("id", models.AutoField(primary_key=True))]),
        migrations.CreateModel(
            "Tag",
            [
                ("id", models.AutoField(primary_key=True)),
                ("widgets", models.ManyToManyField(to="scenarios.widget")),
            ],
        ),
    ]
