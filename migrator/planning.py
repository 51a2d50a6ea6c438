"""Plans: which migrations a target means, in which direction, with what operations."""

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.exceptions import AmbiguityError, InconsistentMigrationHistory
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import SeparateDatabaseAndState
from django.db.migrations.operations.base import Operation
from django.db.migrations.recorder import MigrationRecorder

from migrator import risks, stages
from migrator.exceptions import IntegrityViolation, InvalidRequest, UnknownTarget
from migrator.risks.fields import describe_operation
from migrator.types import (
    MIGRATOR_APP,
    MigrationKey,
    MigrationPlan,
    MigrationTarget,
    Stage,
    migration_label,
)


def resolve_targets(
    loader: MigrationLoader,
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    run_syncdb: bool = False,
) -> list[MigrationTarget]:
    """The targets ``migrate [app_label] [migration_name]`` would use, or UnknownTarget.

    With ``run_syncdb`` an app must be one without migrations (it has no targets), as
    ``migrate --run-syncdb app_label`` requires.
    """
    if app_label is None:
        return loader.graph.leaf_nodes()
    try:
        apps.get_app_config(app_label)
    except LookupError:
        known = ", ".join(sorted(loader.migrated_apps))
        raise UnknownTarget(
            f"No installed app with label {app_label!r}. Apps with migrations: {known}."
        ) from None
    if run_syncdb and app_label in loader.migrated_apps:
        raise InvalidRequest(f"Can't use --run-syncdb with app {app_label!r}: it has migrations.")
    if run_syncdb:
        return []
    if app_label not in loader.migrated_apps:
        raise UnknownTarget(f"App {app_label!r} does not have migrations.")
    if migration_name is None:
        return [key for key in loader.graph.leaf_nodes() if key[0] == app_label]
    if migration_name == "zero":
        return [(app_label, None)]
    return [_named_target(loader, app_label, migration_name)]


def _named_target(loader: MigrationLoader, app_label: str, migration_name: str) -> MigrationTarget:
    """The migration a (prefix of a) name means, as ``migrate`` resolves it."""
    try:
        migration = loader.get_migration_by_prefix(app_label, migration_name)
    except AmbiguityError:
        raise UnknownTarget(
            f"More than one migration of {app_label!r} matches {migration_name!r}; "
            "give more of its name."
        ) from None
    except KeyError:
        names = sorted(n for a, n in loader.disk_migrations if a == app_label)
        raise UnknownTarget(
            f"No migration of {app_label!r} matches {migration_name!r}; "
            f"{closest(migration_name, names)}"
        ) from None
    target = (app_label, migration.name)
    if target not in loader.graph.nodes and target in loader.replacements:
        # A partially applied squash is not in the graph: aim at what it replaces.
        target = loader.replacements[target].replaces[-1]
    if target in loader.graph.nodes or target in loader.applied_migrations:
        return target  # an applied one the squash replaced: Django's executor plans back to it
    squash = next(  # not applied, and its squash stands for it in the graph
        (key for key, s in loader.replacements.items() if target in s.replaces), None
    )
    if squash in loader.graph.nodes:
        raise UnknownTarget(
            f"Migration {migration_label(target)} is replaced by squash "
            f"{migration_label(squash)}; target {squash[1]!r} instead."
        )
    return target


def closest(wanted: str, names: list[str], shown: int = 3) -> str:
    """The names a mistyped one may have meant (prefix, then spelling), else some known
    ones: a few, wherever there are dozens (wagtailcore has a hundred migrations)."""
    close = [name for name in names if name.startswith(wanted)] or difflib.get_close_matches(
        wanted, names, n=shown, cutoff=0.5
    )
    if close:
        more = f" (or {len(close) - shown} more)" if len(close) > shown else ""
        return f"did you mean {' or '.join(repr(name) for name in close[:shown])}{more}?"
    if len(names) > 2 * shown:
        return f"known: {', '.join(names[:shown])}, ... {', '.join(names[-shown:])} ({len(names)})."
    return f"known: {', '.join(names) or 'none'}."


def refresh_applied(loader: MigrationLoader) -> None:
    """Bring a loader's applied set up to date, e.g. under the lock after another run.

    Rebuilding the graph reads every migration again; only a squash's place in the graph
    depends on what is applied, so without one involved the applied set is just replaced.
    """
    applied = MigrationRecorder(loader.connection).applied_migrations()
    changed = applied.keys() ^ loader.applied_migrations.keys()
    if not changed:
        return
    squashing = {
        key
        for squash_key, squash in loader.replacements.items()
        for key in (squash_key, *squash.replaces)
    }
    if changed & squashing:
        loader.build_graph()
    else:
        loader.applied_migrations = applied


def check_history(loader: MigrationLoader) -> None:
    """Refuse what ``migrate`` refuses: inconsistent history and conflicting leaf nodes."""
    try:
        loader.check_consistent_history(loader.connection)
    except InconsistentMigrationHistory as exc:
        raise IntegrityViolation(f"{exc} Fix the history before migrating.") from exc
    conflicts = loader.detect_conflicts()
    if conflicts:
        described = "; ".join(
            f"{', '.join(sorted(names))} in {app}" for app, names in sorted(conflicts.items())
        )
        raise IntegrityViolation(
            f"Conflicting migrations (several leaf nodes): {described}. "
            "Run 'python manage.py makemigrations --merge'."
        )


@dataclass
class PlannedOperation:
    description: str
    reversible: bool
    findings: list[risks.Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "reversible": self.reversible,
            "findings": [finding.as_dict() for finding in self.findings],
        }


@dataclass
class PlannedMigration:
    app_label: str
    name: str
    backwards: bool
    atomic: bool
    operations: list[PlannedOperation]
    stage: stages.StageDecision | None = None

    @property
    def label(self) -> str:
        return f"{self.app_label}.{self.name}"

    @property
    def waits_for_old_code(self) -> bool:
        """Undoing a before_deploy migration breaks the new code: only once the old is back."""
        return self.backwards and self.stage is not None and self.stage.stage is Stage.BEFORE_DEPLOY

    def as_dict(self) -> dict[str, Any]:
        described = {
            "migration": self.label,
            "direction": "unapply" if self.backwards else "apply",
            "atomic": self.atomic,
            "operations": [operation.as_dict() for operation in self.operations],
        }
        if self.stage is not None:
            described.update(self.stage.as_dict())
            if self.backwards:
                described["waits_for_old_code"] = self.waits_for_old_code
        return described


def describe_plan(
    plan: MigrationPlan,
    *,
    connection: BaseDatabaseWrapper | None = None,
    loader: MigrationLoader | None = None,
    stage: Stage | None = None,
    fake: Collection[MigrationKey] = (),
) -> list[PlannedMigration]:
    """Each migration of a plan with a description of each of its operations.

    Given a connection, each operation also carries its risk findings (``risks.Finding``),
    with table sizes read from that database, and each migration its stage. ``stage``: the
    deploy stage the plan runs in; in the after-deploy one no old code runs. ``fake``: the
    migrations only recorded, none of whose operations runs: they carry no finding.
    """
    findings, decisions = {}, {}
    if connection is not None and plan:
        loader = loader or MigrationLoader(connection)
        old_code_runs = stage is not Stage.AFTER_DEPLOY
        findings = risks.analyse_plan(plan, connection, loader, old_code_runs=old_code_runs)
        decisions = stages.decide(plan, loader)
    described = []
    for migration, backwards in plan:
        operations = migration.operations[::-1] if backwards else migration.operations
        key = (migration.app_label, migration.name)
        per_operation = (key not in fake and findings.get(key)) or [[] for _ in operations]
        described.append(
            PlannedMigration(
                app_label=migration.app_label,
                name=migration.name,
                backwards=backwards,
                atomic=migration.atomic,
                stage=decisions.get((migration.app_label, migration.name)),
                operations=[
                    PlannedOperation(
                        description=_describe(operation, backwards),
                        reversible=reversible(operation),
                        findings=operation_findings,
                    )
                    for operation, operation_findings in zip(operations, per_operation, strict=True)
                ],
            )
        )
    return described


def _describe(operation: Any, backwards: bool) -> str:
    return ("Undo " if backwards else "") + describe_operation(operation)


def plan_labels(plan: MigrationPlan) -> list[str]:
    return [migration_label(migration) for migration, _ in plan]


def forward_plan(executor: MigrationExecutor, targets: list[MigrationTarget]) -> MigrationPlan:
    """The plan for targets, refusing backward steps: undoing is ``rollback``'s job."""
    plan = executor.migration_plan(targets)
    backwards = [migration_label(m) for m, is_backwards in plan if is_backwards]
    if backwards:
        raise InvalidRequest(
            f"That target would unapply {', '.join(backwards)}; safemigrate only applies. "
            "Use 'python manage.py rollback' to undo migrations."
        )
    return plan


def own_targets(loader: MigrationLoader) -> list[MigrationKey]:
    """The latest migrations of migrator's own, which make its tables as it needs them."""
    return [key for key in loader.graph.leaf_nodes() if key[0] == MIGRATOR_APP]


def own_plan(executor: MigrationExecutor) -> MigrationPlan:
    """migrator's own pending migrations (after an upgrade of migrator): every run that
    changes the database applies them first, under the run lock, whatever its target."""
    return executor.migration_plan(own_targets(executor.loader))


def own_first(executor: MigrationExecutor, plan: MigrationPlan) -> MigrationPlan:
    """A forward plan as safemigrate carries it out: migrator's own pending migrations
    first (``own_plan``), then the rest of it."""
    own = own_plan(executor)
    return own + [step for step in plan if step not in own]


@dataclass(frozen=True)
class SqlStep:
    """The SQL one migration of a plan runs (``safemigrate --sql``, ``rollback --sql``)."""

    migration: str  # app_label.name
    statements: list[str]  # as ``sqlmigrate`` prints them, comments included
    no_sql: list[str] = field(default_factory=list)  # its operations that run no SQL, and why

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "statements": self.statements, "no_sql": self.no_sql}


def plan_sql(loader: MigrationLoader, plan: MigrationPlan) -> list[SqlStep]:
    """The SQL of each step of a plan, forward or backward, changing nothing.

    A backward step with an irreversible operation has no SQL at all (Django cannot
    unapply it); Python code (RunPython) has none either. Both are named in ``no_sql``.
    """
    steps = []
    for migration, backwards in plan:
        irreversible = [op for op in migration.operations if backwards and not reversible(op)]
        no_sql = [f"{describe_operation(op)}: irreversible" for op in irreversible] or [
            f"{describe_operation(op)}: Python code"
            for op in migration.operations
            if not op.reduces_to_sql
        ]
        statements = [] if irreversible else loader.collect_sql([(migration, backwards)])
        steps.append(SqlStep(migration_label(migration), statements, no_sql))
    return steps


def reversible(operation: Operation) -> bool:
    """Whether Django can unapply ``operation``: a ``SeparateDatabaseAndState`` is only as
    reversible as its database operations (Django asks the outer one alone, and a RunPython
    without reverse inside fails half-way through the undo)."""
    if isinstance(operation, SeparateDatabaseAndState):
        return all(reversible(inner) for inner in operation.database_operations)
    return operation.reversible
