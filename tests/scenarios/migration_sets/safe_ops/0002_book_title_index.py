from django.db import migrations, models

from migrator.operations import AddIndexSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0001_initial")]
    operations = [AddIndexSafely("book", models.Index(fields=["title"], name="book_title_idx"))]
