from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0001_initial")]
    operations = [migrations.DeleteModel("Tag")]
