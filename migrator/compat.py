"""The differences between the Django versions migrator supports (4.2, 5.2, 6.0, 6.1), in one place.

migrator subclasses and calls Django's migration machinery, some of it private. Each
function here hides one difference found by reading each supported version's source; the
rest of migrator calls these and never tests ``django.VERSION`` itself. tests/test_compat.py
holds one test per difference. What did not change across the supported versions
(``MigrationExecutor.migrate``/``migration_plan``/``_create_project_state``,
``MigrationLoader``'s attributes, ``MigrationRecorder``, ``MigrationAutodetector.changes``,
``emit_pre/post_migrate_signal``, the schema editor's ``atomic_migration`` and
``deferred_sql``, the test database helpers of ``connection.creation``) is used directly.
"""

from collections.abc import Container

import django
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from migrator.types import MigrationKey

# Django 6.0 lets a squash replace squashes (nested squashes): MigrationExecutor.record_migration
# takes (app_label, name, forward) and recurses into what a squash replaces, recording the squash
# itself too; MigrationLoader.all_replaced_applied follows nested squashes.
NESTED_SQUASHES = django.VERSION >= (6, 0)


def record_applied(executor: MigrationExecutor, migration: Migration) -> None:
    """Record ``migration`` applied in ``django_migrations`` the way ``migrate`` does.

    Before 6.0 a squash is recorded under the names it replaces only (``check_replacements``
    adds its own name later); from 6.0 under those and its own name, nested squashes followed.
    The executor must not override ``record_migration``: from 6.0 it calls itself for what a
    squash replaces.
    """
    if NESTED_SQUASHES:
        executor.record_migration(migration.app_label, migration.name)
    else:
        executor.record_migration(migration)


def record_unapplied(executor: MigrationExecutor, migration: Migration) -> None:
    """Record ``migration`` (and what it replaces) unapplied the way ``migrate`` does."""
    if NESTED_SQUASHES:
        executor.record_migration(migration.app_label, migration.name, forward=False)
        return
    for app_label, name in [*migration.replaces, (migration.app_label, migration.name)]:
        executor.recorder.record_unapplied(app_label, name)


def all_replaced_applied(
    loader: MigrationLoader, key: MigrationKey, applied: Container[MigrationKey]
) -> bool:
    """Whether ``key`` is a squash all of whose replaced migrations are in ``applied``.

    From 6.0 a replaced migration may itself be a squash, applied when all it replaces are.
    """
    if NESTED_SQUASHES:
        return loader.all_replaced_applied(key, applied)
    squash = loader.replacements.get(key)
    return squash is not None and all(tuple(r) in applied for r in squash.replaces)


# Django 5.2 makes the PostgreSQL editor build a varchar_pattern_ops/text_pattern_ops index
# ("_like") again after an indexed column changes between varchar, text and citext (4.2 drops
# it and leaves it dropped); a change within one of them (varchar(50) to varchar(100)) keeps it.
REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE = django.VERSION >= (5, 2)
