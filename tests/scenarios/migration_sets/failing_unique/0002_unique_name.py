from django.db import migrations, models


def two_alike(apps, schema_editor):
    Widget = apps.get_model("scenarios", "Widget")
    alias = schema_editor.connection.alias
    Widget.objects.using(alias).bulk_create([Widget(name="same"), Widget(name="same")])


class Migration(migrations.Migration):
    """Fails on the rows it adds: PostgreSQL's error has a DETAIL line naming the key."""

    dependencies = [("scenarios", "0001_initial")]
    operations = [
        migrations.RunPython(two_alike, migrations.RunPython.noop),
        migrations.AlterField("widget", "name", models.CharField(max_length=50, unique=True)),
    ]
