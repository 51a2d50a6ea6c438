from django.db import migrations, models

from migrator.operations import AddUniqueSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0002_book_title_index")]
    operations = [
        AddUniqueSafely("book", models.UniqueConstraint(fields=["isbn"], name="book_isbn_uniq"))
    ]
