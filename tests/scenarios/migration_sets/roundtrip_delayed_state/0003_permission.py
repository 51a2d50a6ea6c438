"""A data migration whose reverse queries Permission by ContentType, as wagtail's do."""

from django.db import migrations


def add(apps, schema_editor):
    db = schema_editor.connection.alias
    content_type, _ = (
        apps.get_model("contenttypes", "ContentType")
        .objects.using(db)
        .get_or_create(app_label="scenarios", model="thing")
    )
    apps.get_model("auth", "Permission").objects.using(db).get_or_create(
        content_type=content_type, codename="frob_thing", defaults={"name": "Can frob"}
    )


def remove(apps, schema_editor):
    db = schema_editor.connection.alias
    content_type = (
        apps.get_model("contenttypes", "ContentType")
        .objects.using(db)
        .get(app_label="scenarios", model="thing")
    )
    apps.get_model("auth", "Permission").objects.using(db).filter(
        content_type=content_type, codename="frob_thing"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_longer_name")]
    operations = [migrations.RunPython(add, remove)]
