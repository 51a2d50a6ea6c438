"""Django version differences (migrator/compat.py): one test per difference, on both vendors.

Each test drives the public surface and compares it with what Django's own ``migrate``
does on the same Django version, so it fails wherever compat.py picks the wrong branch.
"""

import importlib
import shutil

import pytest
from django.db import connections

from migrator import compat, integrity
from migrator.models import MigrationHash
from tests.conftest import SETS
from tests.utils import applied, run_command

SCRIPTED = ("--noinput", "--yes", "--allow-data-loss")


def hashed(alias: str) -> set[str]:
    return set(
        MigrationHash.objects.using(alias)
        .filter(app_label="scenarios")
        .values_list("name", flat=True)
    )


def test_squash_recorded_and_unrecorded_as_migrate_does(db_alias, migration_set):
    """MigrationExecutor.record_migration: (migration) before 6.0; (app_label, name, forward)."""
    migration_set("integrity_squashed")
    assert run_command("migrate", "scenarios", database=db_alias, verbosity=0)[2] == 0
    by_migrate = applied(db_alias, "scenarios")
    assert run_command("migrate", "scenarios", "zero", database=db_alias, verbosity=0)[2] == 0
    assert applied(db_alias, "scenarios") == []

    assert run_command("safemigrate", "scenarios", database=db_alias, verbosity=0)[2] == 0
    assert applied(db_alias, "scenarios") == by_migrate
    assert hashed(db_alias) == {"0001_squashed_0002_second"}  # the file that ran

    _, err, code = run_command("rollback", "scenarios", "zero", *SCRIPTED, database=db_alias)
    assert (code, applied(db_alias, "scenarios"), hashed(db_alias)) == (0, [], set()), err
    assert "integrity_first" not in connections[db_alias].introspection.table_names()


@pytest.mark.skipif(not compat.NESTED_SQUASHES, reason="nested squashes need Django 6.0+")
def test_nested_squash_marked_applied_gets_its_hash(db_alias, migration_set):
    """MigrationLoader.all_replaced_applied (6.0+) follows a squash of a squash."""
    copy = migration_set("integrity_squashed")
    shutil.copy(SETS / "compat_nested_squash" / "0003_third.py", copy)
    assert run_command("safemigrate", "scenarios", "0003", database=db_alias, verbosity=0)[2] == 0
    outer = "0001_squashed_0003_third"
    shutil.copy(SETS / "compat_nested_squash" / f"{outer}.py", copy)
    importlib.invalidate_caches()

    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    assert outer in applied(db_alias, "scenarios")
    assert MigrationHash.objects.using(db_alias).get(
        app_label="scenarios", name=outer
    ).checksum == integrity.file_hash(copy / f"{outer}.py")
    out, err, code = run_command("verifymigrations", database=db_alias)
    assert code == 0, out + err
