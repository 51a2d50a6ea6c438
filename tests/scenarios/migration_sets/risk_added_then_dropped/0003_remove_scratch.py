from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_add_scratch")]
    operations = [migrations.RemoveField("widget", "scratch")]
