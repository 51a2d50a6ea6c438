"""A data migration whose reverse does nothing: re-applying it duplicates its row."""

from django.db import migrations, transaction


def seed(apps, schema_editor):
    # As Model.save() does: an error inside the migration's atomic block marks it for
    # rollback, so SQLite's schema editor then raises TransactionManagementError over it.
    alias = schema_editor.connection.alias
    with transaction.mark_for_rollback_on_error(alias), schema_editor.connection.cursor() as cursor:
        cursor.execute("INSERT INTO rt_item (id, name) VALUES (1, 'seed')")


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_create")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
