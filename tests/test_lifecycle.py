"""One run life cycle: the record, the lock, migrator's own tables, dead runs, --json.

Every flow that changes a database goes through ``migrator.lifecycle``; these tests hold
it to the failure paths that each flow used to write by hand.
"""

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from migrator.models import Run
from tests.utils import applied, run_command

def test_safemigrate_after_migrate_applied_part_of_migrators_own_migrations(db_alias):
    call_command("migrate", "migrator", "0001", database=db_alias, verbosity=0)
    out, err, code = run_command("safemigrate", database=db_alias, interactive=False)
    assert (err, code) == ("", 0)
    assert "migrationhash_duration" in applied(db_alias, "migrator")[-1]
    assert Permission.objects.using(db_alias).exists()
    assert ContentType.objects.using(db_alias).filter(app_label="ledger").exists()
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 0
    assert Run.objects.using(db_alias).get(command="safemigrate").outcome == "succeeded"
