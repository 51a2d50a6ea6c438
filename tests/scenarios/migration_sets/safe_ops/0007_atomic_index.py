"""A safe operation in an atomic migration: refused on PostgreSQL, plain on SQLite."""

from django.db import migrations, models

from migrator.operations import AddIndexSafely


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0006_book_pages_not_null")]
    operations = [AddIndexSafely("book", models.Index(fields=["isbn"], name="book_isbn_idx"))]
