from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.AddField("tag", "colour", models.CharField(max_length=10, null=True))]
