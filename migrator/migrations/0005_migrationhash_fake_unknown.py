"""Hash records that cannot say whether their apply was faked say so: ``fake`` is NULL.

A migrator older than its migration 0004 recorded no ``fake``, and 0004 filled in False
for all it had written: a ``--fake-initial`` apply a killed run of that version made
looked real, and ``rollback --last`` would run its reverse, dropping an adopted table.
The column is nullable from here on, without a database default, so that an older
migrator still running beside this one (a rolling deploy) writes NULL instead of failing.
"""

from django.db import migrations, models

FAKE_RECORDED_SINCE = "0004_migrationhash_fake_run_ordering"


def forget_unrecorded_fakes(apps, schema_editor):
    hashes = apps.get_model("migrator", "MigrationHash").objects.using(
        schema_editor.connection.alias
    )
    mark_unknown_fakes(hashes)


def mark_unknown_fakes(hashes):
    """Mark NULL the records of ``hashes`` (a queryset of them all) that ``unknown_fakes``
    finds. A portable restore of a backup taken before this migration does the same to the
    records it loads."""
    unknown = unknown_fakes(hashes)
    if unknown.exists():  # none on a new database: no write
        unknown.update(fake=None)


def unknown_fakes(hashes):
    """Every False record of ``hashes`` but those written after migrator.0004's own record.

    The run that applies 0004 writes that record right after it; a record with a larger
    id (the database's order, not the hosts' clocks) was written by a migrator that
    records ``fake``, as an older one's insert failed on 0004's NOT NULL column. Without
    that record (a run killed before writing it, 0004 applied by plain ``migrate``),
    every False record is one. One found needlessly only makes ``rollback --last`` refuse
    a ``--fake-initial`` run that did not finish; one missed could cost a table. Commands
    that only look at tables still without this migration find them the same way.
    """
    unknown = hashes.filter(fake=False)
    since = hashes.filter(app_label="migrator", name=FAKE_RECORDED_SINCE).first()
    if since is not None:
        unknown = unknown.filter(id__lt=since.id)
    return unknown


class Migration(migrations.Migration):
    dependencies = [
        ("migrator", "0004_migrationhash_fake_run_ordering"),
    ]

    operations = [
        migrations.AlterField(
            model_name="migrationhash",
            name="fake",
            field=models.BooleanField(default=False, null=True),
        ),
        migrations.RunPython(forget_unrecorded_fakes, migrations.RunPython.noop),
    ]
