from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("auth", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Bar",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=20, db_index=True)),
                ("group", models.ForeignKey("auth.Group", models.CASCADE, null=True)),
            ],
        ),
    ]
