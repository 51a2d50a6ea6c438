from django.db import migrations, models

from migrator.operations import AddCheckSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0003_book_isbn_unique")]
    operations = [
        AddCheckSafely(
            "book",
            models.CheckConstraint(condition=models.Q(pages__gte=0), name="book_pages_gte_0"),
        )
    ]
