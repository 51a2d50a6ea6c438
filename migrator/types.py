"""Django's migration vocabulary, named once."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from django.core.exceptions import FieldDoesNotExist
from django.db import DEFAULT_DB_ALIAS
from django.db.migrations import Migration

from migrator.conf import get_settings
from migrator.exceptions import BrokenOperation

if TYPE_CHECKING:  # planning sits above this module; the reports only hold its objects
    from migrator.planning import PlannedMigration
    from migrator.stages import HeldBack

MIGRATOR_APP: Final = "migrator"  # this app's label
MigrationKey: TypeAlias = tuple[str, str]  # (app_label, name)
MigrationTarget: TypeAlias = tuple[str, str | None]  # None means "zero"
MigrationPlan: TypeAlias = list[tuple[Migration, bool]]  # True: unapply


class Stage(StrEnum):
    """When a migration runs in a zero-downtime deploy (``migrator.stages``)."""

    BEFORE_DEPLOY = "before_deploy"  # the old code survives it
    AFTER_DEPLOY = "after_deploy"  # it breaks the old code: only once the new code runs


@dataclass(frozen=True)
class ProgressEvent:
    """One thing a run reports while it works; commands decide how to show it."""

    action: str  # apply_start, apply_success, unapply_start, unapply_success, lock_wait, ...
    migration: str | None = None  # "app_label.name"
    fake: bool = False
    duration: float | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


ProgressCallback: TypeAlias = Callable[[ProgressEvent], None]
ConfirmCallback: TypeAlias = Callable[[str, str], bool]  # (question, expected answer) -> yes?


def migration_label(migration: Migration | MigrationKey) -> str:
    """'app_label.name', the way Django prints a migration."""
    if isinstance(migration, tuple):
        app_label, name = migration
        return f"{app_label}.{name}"
    return f"{migration.app_label}.{migration.name}"


def state_forwards(migration: Migration, operation: Any, state: Any) -> None:
    """``operation.state_forwards``; a model or field the state lacks (a misspelt name) is
    one line naming the migration and the operation, not Django's bare ``KeyError``."""
    try:
        operation.state_forwards(migration.app_label, state)
    except (LookupError, FieldDoesNotExist) as exc:
        number = migration.operations.index(operation) + 1
        missing = repr(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise BrokenOperation(
            f"Migration {migration_label(migration)}: operation {number} "
            f"({type(operation).__name__}) names {missing}, which the models before it do not "
            "have; fix the name in the migration file."
        ) from exc


def describe_keys(keys: Iterable[MigrationKey], limit: int = 3) -> str:
    """'a.0001, b.0002 and 3 more', for one-line messages."""
    labels = sorted(migration_label(key) for key in keys)
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def ignore_progress(event: ProgressEvent) -> None:
    """Default progress callback for library callers that want no reports."""


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run should behave; commands fill it from their flags."""

    database: str = DEFAULT_DB_ALIAS
    fake: bool = False
    fake_initial: bool = False  # migrate --fake-initial: fake initials whose tables exist
    run_syncdb: bool = False  # migrate --run-syncdb: create tables of apps without migrations
    lock_timeout: float | None = None  # None: MIGRATOR["RUN_LOCK_TIMEOUT"]
    backup: bool | None = None  # None: MIGRATOR["BACKUP_BEFORE_MIGRATE"]
    assume_yes: bool = False
    allow_data_loss: bool = False
    verbosity: int = 1  # passed to pre_migrate/post_migrate receivers
    interactive: bool = False
    stage: "Stage | None" = None  # --stage: before_deploy applies what the old code survives
    arguments: Mapping[str, Any] = field(default_factory=dict)  # recorded in the audit

    @property
    def run_lock_timeout(self) -> float:
        if self.lock_timeout is None:
            return get_settings().run_lock_timeout
        return self.lock_timeout


@dataclass
class StepReport:
    migration: str
    direction: str
    duration: float | None
    fake: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "direction": self.direction,
            "duration": None if self.duration is None else round(self.duration, 6),
            "fake": self.fake,
        }


@dataclass
class RunReport:
    """What a run did; ``as_dict()`` is the ``--json`` document."""

    command: str
    database: str
    environment: str
    outcome: str  # nothing | succeeded | planned | failed | interrupted | refused
    plan: "list[PlannedMigration]" = field(default_factory=list)
    steps: list[StepReport] = field(default_factory=list)
    run_id: int | None = None
    backup_id: str | None = None
    error: str = ""
    failed_migration: str = ""
    stage: "Stage | None" = None
    held_back: "list[HeldBack]" = field(default_factory=list)  # by --stage before-deploy
    own_first: list[str] = field(default_factory=list)  # migrator's own, applied before the plan

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": None if self.stage is None else self.stage.value,
            "held_back": [held.as_dict() for held in self.held_back],
            "command": self.command,
            "database": self.database,
            "environment": self.environment,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "backup_id": self.backup_id,
            "plan": [migration.as_dict() for migration in self.plan],
            "migrations": [step.as_dict() for step in self.steps],
            "own_first": self.own_first,
            "error": self.error,
            "failed_migration": self.failed_migration,
        }
