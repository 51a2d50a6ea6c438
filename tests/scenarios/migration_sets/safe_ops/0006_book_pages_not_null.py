from django.db import migrations

from migrator.operations import SetNotNullSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0005_book_author")]
    operations = [SetNotNullSafely("book", "pages")]
