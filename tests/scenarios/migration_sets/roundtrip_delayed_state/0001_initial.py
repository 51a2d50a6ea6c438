from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("auth", "0001_initial"), ("contenttypes", "0002_remove_content_type_name")]
    operations = [
        migrations.CreateModel(
            "Thing",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=10)),
                (
                    "kind",
                    models.ForeignKey("contenttypes.ContentType", models.SET_NULL, null=True),
                ),
            ],
        ),
    ]
