from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Note",
            [("id", models.AutoField(primary_key=True)), ("text", models.CharField(max_length=50))],
        ),
    ]
