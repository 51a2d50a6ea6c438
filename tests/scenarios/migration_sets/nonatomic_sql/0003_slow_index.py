"""A concurrent index build slower than a small PG_STATEMENT_TIMEOUT (PostgreSQL only).

Its expression sleeps 0.3 s per row, so the build takes longer than the timeout the
tests set; it must not be cancelled.
"""

from django.db import migrations


def build(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "CREATE FUNCTION scenarios_slow(integer) RETURNS integer IMMUTABLE LANGUAGE sql "
        "AS 'SELECT $1 FROM pg_sleep(0.3)'"
    )
    schema_editor.execute(
        "CREATE INDEX CONCURRENTLY widget_slow_idx ON scenarios_widget ((scenarios_slow(id)))"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS widget_slow_idx")
    schema_editor.execute("DROP FUNCTION IF EXISTS scenarios_slow(integer)")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0002_touch_widgets")]
    operations = [migrations.RunPython(build, drop)]
