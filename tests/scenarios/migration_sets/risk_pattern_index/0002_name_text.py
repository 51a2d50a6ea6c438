"""An indexed varchar made text: PostgreSQL's editor builds its LIKE index again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.AlterField("widget", "name", models.TextField(db_index=True))]
