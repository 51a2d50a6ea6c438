from django.db import migrations

from tests.scenarios.steps import create_item_table


class Migration(migrations.Migration):
    initial = True
    operations = [create_item_table()]
