from django.db import migrations, models

from migrator.operations import AddForeignKeySafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0004_book_pages_check")]
    operations = [
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
