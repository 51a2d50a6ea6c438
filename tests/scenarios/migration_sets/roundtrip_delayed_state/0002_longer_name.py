"""An AlterField of a plain field re-renders its model and its relations only (the state's
apps are "delayed"): auth.Permission keeps a key to the ContentType class before it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.AlterField("thing", "name", models.CharField(max_length=20))]
