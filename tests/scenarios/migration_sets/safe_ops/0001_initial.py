from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Author",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("title", models.CharField(max_length=100)),
                ("isbn", models.CharField(max_length=20, null=True)),
                ("pages", models.IntegerField(null=True)),
            ],
        ),
    ]
