# After the nested squash: Django points its dependency at 0001_squashed_0003_third.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0003_third")]
    operations = [migrations.RunSQL("SELECT 1", migrations.RunSQL.noop)]
