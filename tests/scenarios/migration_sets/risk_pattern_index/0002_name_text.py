"""An indexed varchar made text: PostgreSQL's editor builds its LIKE index again (from
Django 5.2); one made longer keeps it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.AlterField("widget", "name", models.TextField(db_index=True)),
        migrations.AlterField("widget", "code", models.CharField(max_length=50, db_index=True)),
    ]
