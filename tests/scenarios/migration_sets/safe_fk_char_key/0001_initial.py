from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Code", fields=[("code", models.CharField(max_length=10, primary_key=True))]
        ),
        migrations.CreateModel(name="Item", fields=[("id", models.AutoField(primary_key=True))]),
    ]
