"""Django version differences (migrator/compat.py): one test per difference, on both vendors.

Each test drives the public surface and compares it with what Django's own ``migrate``
does on the same Django version, so it fails wherever compat.py picks the wrong branch.
"""

import importlib
import shutil

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from migrator import compat, integrity
from migrator.models import MigrationHash
from tests.conftest import SETS
from tests.utils import applied, run_command

SCRIPTED = ("--noinput", "--yes", "--allow-data-loss")
NESTED = SETS / "compat_nested_squash"


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
def test_nested_squash_over_applied_files_verifies_and_gets_its_hash(db_alias, migration_set):
    """MigrationLoader.all_replaced_applied (6.0+) follows a squash of a squash."""
    inner, outer = "0001_squashed_0002_second", "0001_squashed_0003_third"
    copy = migration_set("integrity_squashed", without=(f"{inner}.py",))
    for name in ("0003_third.py", "0004_fourth.py"):
        shutil.copy(NESTED / name, copy)
    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    shutil.copy(SETS / "integrity_squashed" / f"{inner}.py", copy)
    shutil.copy(NESTED / f"{outer}.py", copy)
    importlib.invalidate_caches()

    # The outer squash replaces the inner one: applied through the files both replace.
    rows = {("scenarios", name) for name in applied(db_alias, "scenarios")}
    loader = MigrationLoader(connections[db_alias])
    assert compat.all_replaced_applied(loader, ("scenarios", outer), rows)
    partly = rows - {("scenarios", "0002_second")}
    assert not compat.all_replaced_applied(loader, ("scenarios", outer), partly)
    out, err, code = run_command("verifymigrations", database=db_alias)
    assert code == 0, out + err
    # 0004 now depends on the outer squash: migrate it back through the squash and forth.
    _, err, code = run_command("rollback", "scenarios", outer, *SCRIPTED, database=db_alias)
    assert code == 0, err
    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    assert MigrationHash.objects.using(db_alias).get(
        app_label="scenarios", name="0004_fourth"
    ).checksum == integrity.file_hash(copy / "0004_fourth.py")
    # Django's next step: delete what the outer squash replaces, the inner squash included.
    # 0001_initial and 0002_second, replaced by a squash no longer on disk, are still covered.
    for name in ("0001_initial", "0002_second", inner, "0003_third"):
        (copy / f"{name}.py").unlink()
    importlib.invalidate_caches()
    out, err, code = run_command("verifymigrations", database=db_alias)
    assert (code, err) == (0, ""), out
    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_pattern_index_rebuilt_on_a_type_change_as_django_does(db_alias, migration_set):
    """The PostgreSQL editor builds a varchar made text its ``_like`` index again from 5.2."""
    migration_set("risk_pattern_index")
    out, err, code = run_command("sqlmigrate", "scenarios", "0002", database=db_alias)

    assert (code, err) == (0, "")
    assert ("text_pattern_ops" in out) is compat.REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE
