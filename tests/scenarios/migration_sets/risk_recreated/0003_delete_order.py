from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0002_rename_amount")]
    operations = [migrations.DeleteModel("Order")]
