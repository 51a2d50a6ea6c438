from django.db import migrations, models

from migrator.operations import AddCheckSafely
from tests.scenarios.steps import CHECK_CONDITION, noop, pause_here


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0003_book_isbn_unique")]
    operations = [
        # Undone last: a rollback paused here has committed the reverse, not its record.
        migrations.RunPython(noop, pause_here("scenarios.0004_book_pages_check:reverse")),
        AddCheckSafely(
            "book",
            models.CheckConstraint(
                **{CHECK_CONDITION: models.Q(pages__gte=0)}, name="book_pages_gte_0"
            ),
        ),
        migrations.RunPython(pause_here("scenarios.0004_book_pages_check"), noop),
    ]
