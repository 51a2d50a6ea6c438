from django.db import migrations, models

from migrator.operations import AddCheckSafely
from tests.scenarios.steps import CHECK_CONDITION


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0003_book_isbn_unique")]
    operations = [
        AddCheckSafely(
            "book",
            models.CheckConstraint(
                **{CHECK_CONDITION: models.Q(pages__gte=0)}, name="book_pages_gte_0"
            ),
        )
    ]
