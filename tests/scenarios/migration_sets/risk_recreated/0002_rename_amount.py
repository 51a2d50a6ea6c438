"""Changes to a table that a later migration deletes: a rollback re-creates it empty first."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.RemoveIndex("order", "order_amount"),
        migrations.RenameField("order", "amount", "total"),
        migrations.AddField("order", "note", models.CharField(max_length=20, null=True)),
    ]
