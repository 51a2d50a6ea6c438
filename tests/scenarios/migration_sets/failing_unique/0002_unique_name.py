from django.db import migrations, models


class Migration(migrations.Migration):
    """Fails on the rows 0001 made: PostgreSQL's error has a DETAIL line naming the key."""

    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AlterField("widget", "name", models.CharField(max_length=20, unique=True)),
    ]
