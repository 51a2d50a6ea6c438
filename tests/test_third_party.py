"""migrator on a project of popular third-party apps (tests/third_party), as a team adopts it.

Their migrations live under site-packages: code the team does not own, run on SQLite and
PostgreSQL next to the project's own.
"""

from django.db import connections
from django.db.migrations.loader import MigrationLoader

from tests.utils import applied, run_command


def test_safemigrate_applies_the_third_party_project_as_migrate_does(db_alias, third_party_apps):
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    on_disk = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    for app in third_party_apps:
        expected = sorted(name for label, name in on_disk if label == app)
        assert sorted(applied(db_alias, app)) == expected, app
    assert run_command("migrate", "--check", database=db_alias)[2] == 0
    assert connections[db_alias].introspection.table_names().count("taggit_tag") == 1
