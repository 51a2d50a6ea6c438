"""A statement far longer than any test waits for (PostgreSQL only): killed runs end it."""

from django.db import migrations


class Migration(migrations.Migration):
    operations = [migrations.RunSQL("SELECT pg_sleep(600)", migrations.RunSQL.noop)]
