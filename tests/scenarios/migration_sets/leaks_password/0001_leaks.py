from django.db import migrations

from tests.scenarios.steps import leak_password


class Migration(migrations.Migration):
    operations = [migrations.RunPython(leak_password)]
