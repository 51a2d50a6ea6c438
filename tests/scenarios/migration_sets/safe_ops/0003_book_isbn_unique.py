from django.db import migrations, models

from migrator.operations import AddUniqueSafely
from tests.scenarios.steps import noop, pause_here


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0002_book_title_index")]
    operations = [
        # Undone last: a rollback paused here has committed the reverse, not its record.
        migrations.RunPython(noop, pause_here("scenarios.0003_book_isbn_unique:reverse")),
        AddUniqueSafely("book", models.UniqueConstraint(fields=["isbn"], name="book_isbn_uniq")),
    ]
