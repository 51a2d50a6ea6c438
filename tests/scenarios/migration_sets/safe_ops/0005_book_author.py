from django.db import migrations, models

from migrator.operations import AddForeignKeySafely
from tests.scenarios.steps import noop, pause_here


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0004_book_pages_check")]
    operations = [
        # Undone last: a rollback paused here has committed the reverse, not its record.
        migrations.RunPython(noop, pause_here("scenarios.0005_book_author:reverse")),
        AddForeignKeySafely(
            "book", "author", models.ForeignKey("scenarios.author", models.CASCADE, null=True)
        ),
        AddForeignKeySafely(
            "book",
            "signed_by",
            models.OneToOneField(
                "scenarios.author", models.SET_NULL, null=True, related_name="signed_book"
            ),
        ),
    ]
