"""Deploy stages: which pending migrations the old code survives, and which would break it.

In a zero-downtime deploy the new schema runs under the old code for a while. Additive
changes go first (``before_deploy``: the old code ignores a new table, column or index);
changes that remove or rename what the old code reads go last (``after_deploy``, once no
old code runs). A migration's stage is, in order of precedence:

1. ``stage = Stage.AFTER_DEPLOY`` on its ``Migration`` class;
2. ``MIGRATOR["STAGE_OVERRIDES"]["app_label.migration_name"]`` (migrations you do not own);
3. inferred from its operations by ``INFERENCE`` (documented in docs/zero-downtime.md).

A migration whose operations infer both stages is a system-check error (``migrator.E006``):
part of it would break the old code, part of it the new code needs before it starts.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from django.db.migrations import Migration
from django.db.migrations.graph import MigrationGraph
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models import Field

from migrator.conf import get_settings
from migrator.exceptions import InvalidRequest
from migrator.risks.fields import narrowing
from migrator.types import MigrationKey, MigrationPlan, Stage, migration_label, state_forwards

__all__ = ["INFERENCE", "Stage", "StageDecision", "stage_of"]

BEFORE, AFTER = Stage.BEFORE_DEPLOY, Stage.AFTER_DEPLOY
CHECK_ID: Final = "migrator.E006"

# (stage, why) for one operation, given the project state just before it.
Inferred = tuple[Stage, str]
Rule = Callable[[Any, str, ProjectState], Inferred]


def _always(stage: Stage, why: str) -> Rule:
    def rule(operation: Any, app_label: str, state: ProjectState) -> Inferred:
        return stage, why

    return rule


def _old_field(operation: Any, app_label: str, state: ProjectState) -> Field | None:
    model = state.models.get((app_label, operation.model_name_lower))
    return None if model is None else model.fields.get(operation.name)


def _column(name: str, field: Field) -> str:
    return field.db_column or name


def _alter_field(operation: Any, app_label: str, state: ProjectState) -> Inferred:
    old, new = _old_field(operation, app_label, state), operation.field
    if old is None or old.many_to_many or new.many_to_many:
        return BEFORE, "changes a field the old code's table does not have"
    if old.null and not new.null:
        return AFTER, "makes the column NOT NULL: the old code may write NULL into it"
    narrowed = narrowing(old, new)
    if narrowed:
        return AFTER, f"narrows the column ({narrowed}): the old code may write what no longer fits"
    if _column(operation.name, old) != _column(operation.name, new):
        return AFTER, "renames the column the old code reads"
    return BEFORE, "keeps every value the old code reads and writes"


def _rename_field(operation: Any, app_label: str, state: ProjectState) -> Inferred:
    model = state.models.get((app_label, operation.model_name_lower))
    old = None if model is None else model.fields.get(operation.old_name)
    if old is not None and old.db_column:
        return BEFORE, "renames the field only: db_column keeps the column's name"
    return AFTER, "renames the column the old code reads"


def _rename_model(operation: Any, app_label: str, state: ProjectState) -> Inferred:
    model = state.models.get((app_label, operation.old_name_lower))
    if model is not None and model.options.get("db_table"):
        return BEFORE, "renames the model only: Meta.db_table keeps the table's name"
    return AFTER, "renames the table the old code uses"


def _order_with_respect_to(operation: Any, app_label: str, state: ProjectState) -> Inferred:
    if operation.order_with_respect_to is None:
        return AFTER, "drops the _order column the old code writes"
    return BEFORE, ADDITIVE


def _separate(operation: Any, app_label: str, state: ProjectState) -> Inferred:
    """The database operations decide; the state operations touch no table."""
    found = [infer(inner, app_label, state) for inner in operation.database_operations]
    after = [why for stage, why in found if stage is AFTER]
    if after:
        return AFTER, after[0]
    return BEFORE, "its database operations are additive (state-only changes touch no table)"


ADDITIVE = "additive: the old code ignores it"
SCHEMA_NEUTRAL = "changes no column or table the old code uses"
UNMARKED_CODE = "code migrator cannot see: before_deploy unless the migration is marked"

# Every operation of django.db.migrations.operations and django.contrib.postgres.operations,
# and migrator's own, by class name (subclasses use their nearest listed base class).
INFERENCE: Final[dict[str, Rule]] = {
    "CreateModel": _always(BEFORE, ADDITIVE),
    "DeleteModel": _always(AFTER, "drops the table the old code uses"),
    "RenameModel": _rename_model,
    "AlterModelTable": _always(AFTER, "renames the table the old code uses"),
    "AlterModelTableComment": _always(BEFORE, SCHEMA_NEUTRAL),
    "AlterUniqueTogether": _always(BEFORE, SCHEMA_NEUTRAL),
    "AlterIndexTogether": _always(BEFORE, SCHEMA_NEUTRAL),
    "AlterModelOptions": _always(BEFORE, "state only"),
    "AlterModelManagers": _always(BEFORE, "state only"),
    "AlterOrderWithRespectTo": _order_with_respect_to,
    "AddField": _always(BEFORE, ADDITIVE),
    "RemoveField": _always(AFTER, "drops the column the old code reads and writes"),
    "AlterField": _alter_field,
    "RenameField": _rename_field,
    "AddIndex": _always(BEFORE, ADDITIVE),
    "RemoveIndex": _always(BEFORE, SCHEMA_NEUTRAL),
    "RenameIndex": _always(BEFORE, SCHEMA_NEUTRAL),
    "AddConstraint": _always(BEFORE, ADDITIVE),
    "RemoveConstraint": _always(BEFORE, SCHEMA_NEUTRAL),
    "AlterConstraint": _always(BEFORE, SCHEMA_NEUTRAL),
    "SeparateDatabaseAndState": _separate,
    "RunSQL": _always(BEFORE, UNMARKED_CODE),
    "RunPython": _always(BEFORE, UNMARKED_CODE),
    # django.contrib.postgres.operations
    "CreateExtension": _always(BEFORE, ADDITIVE),
    "AddIndexConcurrently": _always(BEFORE, ADDITIVE),
    "RemoveIndexConcurrently": _always(BEFORE, SCHEMA_NEUTRAL),
    "CreateCollation": _always(BEFORE, ADDITIVE),
    "RemoveCollation": _always(BEFORE, SCHEMA_NEUTRAL),
    "AddConstraintNotValid": _always(BEFORE, ADDITIVE),
    "ValidateConstraint": _always(BEFORE, SCHEMA_NEUTRAL),
    # migrator.operations
    "RunPythonInBatches": _always(BEFORE, UNMARKED_CODE),
    "AddIndexSafely": _always(BEFORE, ADDITIVE),
    "AddUniqueSafely": _always(BEFORE, ADDITIVE),
    "AddCheckSafely": _always(BEFORE, ADDITIVE),
    "AddForeignKeySafely": _always(BEFORE, ADDITIVE),
    "SetNotNullSafely": _always(AFTER, "makes the column NOT NULL: the old code may write NULL"),
}
UNKNOWN = "an operation migrator does not know: before_deploy unless the migration is marked"


def infer(operation: Operation, app_label: str, state: ProjectState) -> Inferred:
    """The stage one operation needs, and why, by its nearest class listed in INFERENCE."""
    for cls in type(operation).__mro__:
        rule = INFERENCE.get(cls.__name__)
        if rule is not None and cls.__module__.startswith(_KNOWN_MODULES):
            return rule(operation, app_label, state)
    return BEFORE, UNKNOWN


_KNOWN_MODULES: Final = ("django.db.migrations.", "django.contrib.postgres.", "migrator.")


@dataclass(frozen=True)
class StageDecision:
    """A migration's stage, where it came from, and what decided it."""

    label: str
    stage: Stage
    source: str  # explicit | override | inferred
    reason: str
    # Inferred both ways: "Operation: why" of each after_deploy operation, then of each
    # additive one (what the new code needs before it starts). Relaxing a column, state
    # changes or code beside a removal are not additive: Django's own contenttypes.0002
    # makes a column nullable, fills it and drops it, all fine after the deploy.
    mixed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage.value, "stage_source": self.source, "stage_reason": self.reason}


def stage_of(migration: Migration, state: ProjectState) -> StageDecision:
    """A migration's stage; ``state`` (before it, never rendered) is moved past it."""
    label = migration_label(migration)
    inferred = []
    for operation in migration.operations:
        stage, why = infer(operation, migration.app_label, state)
        inferred.append((stage, f"{type(operation).__name__}: {why}"))
        state_forwards(migration, operation, state)
    explicit = getattr(migration, "stage", None)
    if explicit is not None:
        return StageDecision(label, _explicit(label, explicit), "explicit", "stage on the class")
    override = get_settings().stage_overrides.get(label)
    if override is not None:
        return StageDecision(label, Stage(override), "override", "MIGRATOR['STAGE_OVERRIDES']")
    after = tuple(why for stage, why in inferred if stage is AFTER)
    if after:
        early = tuple(why for stage, why in inferred if stage is BEFORE and why.endswith(ADDITIVE))
        return StageDecision(label, AFTER, "inferred", after[0], (after + early) if early else ())
    reason = inferred[0][1] if inferred else "no operations"
    return StageDecision(label, BEFORE, "inferred", reason)


def _explicit(label: str, value: Any) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        raise InvalidRequest(
            f"Migration {label} has stage = {value!r}; use Stage.BEFORE_DEPLOY or "
            "Stage.AFTER_DEPLOY (from migrator.stages import Stage)."
        ) from None


def decide(plan: MigrationPlan, loader: MigrationLoader) -> dict[MigrationKey, StageDecision]:
    """The stage of each migration of a plan, forward or backward.

    One walk of the project's migrations in apply order gives each the state just before
    it: the applied ones and the planned ones move the state, nothing is rendered.
    """
    wanted = {(migration.app_label, migration.name) for migration, _ in plan}
    applied = set(loader.applied_migrations)
    state = ProjectState(real_apps=loader.unmigrated_apps)
    decisions = {}
    for key in _apply_order(loader):
        if key in wanted:
            decisions[key] = stage_of(loader.graph.nodes[key], state)
        elif key in applied:
            loader.graph.nodes[key].mutate_state(state, preserve=False)
    return decisions


def _apply_order(loader: MigrationLoader) -> list[MigrationKey]:
    """Every migration of the graph, in the order ``migrate`` applies them to a new database."""
    graph = loader.graph
    return list(
        dict.fromkeys(key for leaf in graph.leaf_nodes() for key in graph.forwards_plan(leaf))
    )


@dataclass(frozen=True)
class HeldBack:
    """A migration ``--stage before-deploy`` does not apply, and why."""

    label: str
    stage: Stage
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.label, "stage": self.stage.value, "reason": self.reason}


def before_deploy(
    plan: MigrationPlan, stages: dict[MigrationKey, StageDecision], graph: MigrationGraph
) -> tuple[MigrationPlan, list[HeldBack]]:
    """The plan's before_deploy migrations that depend on no held-back one, and the rest."""
    held: dict[MigrationKey, HeldBack] = {}
    kept: MigrationPlan = []
    for migration, backwards in plan:
        key = (migration.app_label, migration.name)
        decision = stages[key]
        if decision.stage is AFTER:
            why = f"after_deploy ({decision.source}: {decision.reason})"
            held[key] = HeldBack(decision.label, AFTER, why)
            continue
        blocking = next((parent for parent in _parents(graph, key) if parent in held), None)
        if blocking is not None:
            why = f"depends on {migration_label(blocking)}, which is held back"
            held[key] = HeldBack(decision.label, decision.stage, why)
            continue
        kept.append((migration, backwards))
    return kept, list(held.values())


def select(
    plan: MigrationPlan, loader: MigrationLoader, stage: Stage | None
) -> tuple[MigrationPlan, list[HeldBack]]:
    """What ``safemigrate --stage`` applies of a forward plan, and what it holds back.

    Only ``before_deploy`` filters: ``after_deploy`` (and no stage) applies everything.
    """
    if stage is not BEFORE or not plan:
        return plan, []
    return before_deploy(plan, decide(plan, loader), loader.graph)


def _parents(graph: MigrationGraph, key: MigrationKey) -> Iterator[MigrationKey]:
    return (parent.key for parent in graph.node_map[key].parents)


def mixed_migrations(loader: MigrationLoader) -> list[StageDecision]:
    """Migrations on disk whose operations infer both stages, and that no mark settles."""
    state = ProjectState(real_apps=loader.unmigrated_apps)
    decisions = (stage_of(loader.graph.nodes[key], state) for key in _apply_order(loader))
    return [decision for decision in decisions if decision.mixed]
