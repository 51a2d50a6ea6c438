from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("migrator", "0003_migrationhash_verbose_name_plural"),
    ]

    operations = [
        migrations.AddField(
            model_name="migrationhash",
            name="fake",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterModelOptions(
            name="run",
            options={"ordering": ["-id"]},
        ),
    ]
