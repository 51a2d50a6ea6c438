from django.db import migrations, models


def two_alike(apps, schema_editor):
    Widget = apps.get_model("scenarios", "Widget")
    alias = schema_editor.connection.alias
    Widget.objects.using(alias).bulk_create([Widget(name="same"), Widget(name="same")])


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=20)),
            ],
        ),
        migrations.RunPython(two_alike, migrations.RunPython.noop),
    ]
