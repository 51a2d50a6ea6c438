"""Validated rollback: know what undoing costs before anything is undone.

``rollback`` unapplies migrations with Django's own executor, as ``migrate app 0003``
does, but first validates the whole backward plan (the target exists, every step can be
reversed, the files that will run backwards are the ones that ran forwards) and reports
every problem at once together with the data the rollback destroys. Only then does it go
through the path ``safemigrate`` takes: guard -> lock -> re-plan -> backup -> execute ->
record.

    report = rollback.rollback("ledger", "0003", options=RunOptions(assume_yes=True))
    report = rollback.rollback(last=True, options=RunOptions(database="default"))
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState
from django.db.models import Exists, OuterRef

from migrator import audit, guard, history, integrity, planning, restore, risks, runner
from migrator.audit import recorded
from migrator.backup import keepaudit
from migrator.conf import get_settings
from migrator.exceptions import (
    IntegrityViolation,
    InvalidRequest,
    LockNotAcquired,
    MigrationFailed,
    MigratorError,
    RollbackRefused,
    RunInterrupted,
    UnknownTarget,
)
from migrator.executor import RecordingExecutor
from migrator.lifecycle import ProgressAdapter, locked
from migrator.models import Run, RunStep
from migrator.risks import Finding, LabelledFinding
from migrator.types import (
    MIGRATOR_APP,
    ConfirmCallback,
    MigrationKey,
    MigrationPlan,
    MigrationTarget,
    ProgressCallback,
    ProgressEvent,
    RunOptions,
    RunReport,
    describe_keys,
    ignore_progress,
    migration_label,
)

# Risk codes (migrator.risks) of what a backward step cannot bring back: undoing a
# RemoveField or a DeleteModel brings the column or table back empty.
NOT_RESTORED_CODES = frozenset({"ML104", "ML105"})


@dataclass(frozen=True)
class RollbackRequest:
    """What was asked: a ``migrate``-style target, or the last safemigrate run (``--last``)."""

    app_label: str | None = None
    migration_name: str | None = None
    last: bool = False
    restore: bool = False

    def __post_init__(self) -> None:
        if self.last == bool(self.app_label):
            raise InvalidRequest(
                "Give a target (rollback <app_label> <migration_name|zero>) or --last, not both."
                if self.last
                else "Give a target (rollback <app_label> <migration_name|zero>) or --last."
            )
        if not self.last and not self.migration_name:
            raise InvalidRequest(
                f"Give the migration of {self.app_label!r} to roll back to, or 'zero' to "
                "unapply all of its migrations."
            )
        if self.restore and not self.last:
            raise InvalidRequest("--restore goes with --last: it restores that run's backup.")

    def describe(self) -> str:
        """The request as typed on the command line, for messages and the audit."""
        if self.last:
            return "--last --restore" if self.restore else "--last"
        return f"{self.app_label} {self.migration_name}"


@dataclass(frozen=True)
class Problem:
    """One reason the validation refuses a rollback."""

    code: str  # not_applied | irreversible | integrity | depended_on | squashed | own_tables
    # | no_backup | fake_unknown
    message: str
    migration: str = ""
    operation: str = ""

    @property
    def exit_code(self) -> int:
        if self.code == "integrity":
            return IntegrityViolation.exit_code
        return RollbackRefused.exit_code

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "migration": self.migration,
            "operation": self.operation,
            "exit_code": self.exit_code,
        }


@dataclass
class RollbackReport(RunReport):
    """What a rollback would do or did; ``as_dict()`` is the ``--json`` document."""

    target: str = ""  # the request, as typed
    mode: str = "reverse"  # reverse: run reverse operations | restore: restore a backup
    source_run_id: int | None = None  # --last: the safemigrate run being undone
    source_run_outcome: str | None = None  # ... and how it ended
    restore_backup_id: str | None = None  # --last --restore: the backup restored
    fake: list[str] = field(default_factory=list)  # unapplied as fake: the run only faked them
    problems: list[Problem] = field(default_factory=list)
    data_loss: list[LabelledFinding] = field(default_factory=list)  # what the rollback destroys
    not_restored: list[LabelledFinding] = field(default_factory=list)  # cannot bring back
    hint: str = ""  # the way out when refused (a backup to restore)
    warnings: list[str] = field(default_factory=list)  # e.g. files without a recorded hash

    @property
    def unapplied(self) -> list[str]:
        return [step.migration for step in self.steps if step.direction == "unapply"]

    @property
    def remaining(self) -> list[str]:
        """Planned migrations that are still applied (all but the unapplied ones)."""
        done = set(self.unapplied)
        return [migration.label for migration in self.plan if migration.label not in done]

    def refusal(self) -> MigratorError | None:
        """The error validation raises: exit 2 for integrity problems, else 7; None if fine."""
        if not self.problems:
            return None
        integrity_first = any(p.exit_code == IntegrityViolation.exit_code for p in self.problems)
        error_class = IntegrityViolation if integrity_first else RollbackRefused
        lines = [f"Rollback {self.target} refused; nothing was changed:"]
        lines += [f"  - {problem.message}" for problem in self.problems]
        if self.hint:
            lines.append(self.hint)
        error = error_class("\n".join(lines))
        error.report = self  # type: ignore[attr-defined]  (the command prints it with --json)
        return error

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "target": self.target,
            "mode": self.mode,
            "source_run_id": self.source_run_id,
            "source_run_outcome": self.source_run_outcome,
            "restore_backup_id": self.restore_backup_id,
            "fake": self.fake,
            "problems": [problem.as_dict() for problem in self.problems],
            "data_loss": [item.as_dict() for item in self.data_loss],
            "not_restored": [item.as_dict() for item in self.not_restored],
            "unapplied": self.unapplied,
            "remaining": self.remaining if self.outcome in {"failed", "interrupted"} else [],
            "hint": self.hint,
            "warnings": self.warnings,
        }


class RollbackExecutor(RecordingExecutor):
    """Unapplies the migrations in ``fake_keys`` as fake: the run being undone only faked them."""

    def __init__(self, *args: Any, fake_keys: Iterable[MigrationKey] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fake_keys: frozenset[MigrationKey] = frozenset(fake_keys)

    def unapply_migration(
        self, state: ProjectState, migration: Migration, fake: bool = False
    ) -> ProjectState:
        fake = fake or (migration.app_label, migration.name) in self.fake_keys
        return super().unapply_migration(state, migration, fake=fake)


@dataclass
class _Prepared:
    """A validated plan and the executor it was made with."""

    executor: RollbackExecutor
    targets: list[MigrationTarget]
    plan: MigrationPlan
    report: RollbackReport
    source_run: Run | None = None


def plan_rollback(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    last: bool = False,
    restore: bool = False,
    database: str = DEFAULT_DB_ALIAS,
) -> RollbackReport:
    """What ``rollback`` would do and every reason it would refuse, changing nothing."""
    request = RollbackRequest(app_label, migration_name, last=last, restore=restore)
    prepared = _prepare(request, connections[database])
    prepared.report.outcome = "refused" if prepared.report.problems else "planned"
    return prepared.report


def plan_sql(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    last: bool = False,
    database: str = DEFAULT_DB_ALIAS,
) -> list[planning.SqlStep]:
    """The SQL of the backward plan (``rollback --sql``), naming steps without SQL; changes
    nothing. Irreversible steps are named, not refused: the preview shows what is there."""
    request = RollbackRequest(app_label, migration_name, last=last)
    prepared = _prepare(request, connections[database])
    return planning.plan_sql(prepared.executor.loader, prepared.plan)


def rollback(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    last: bool = False,
    restore: bool = False,
    options: RunOptions,
    progress: ProgressCallback = ignore_progress,
    confirm: ConfirmCallback | None = None,
) -> RollbackReport:
    """Validate, then unapply (or restore) under the guard, the lock and a backup."""
    request = RollbackRequest(app_label, migration_name, last=last, restore=restore)
    connection = connections[options.database]
    prepared = _validated(request, connection, options=options)
    report = prepared.report
    if not prepared.plan:
        report.outcome = "nothing"
        return report
    runner.report_risks(report.plan, progress)  # shown before anything is asked
    if report.data_loss or report.not_restored:  # as --plan shows them, in every environment
        progress(
            ProgressEvent(
                "rollback_losses",
                data={"data_loss": report.data_loss, "not_restored": report.not_restored},
            )
        )
    if request.restore:
        return _restore(
            request, prepared, connection, options=options, progress=progress, confirm=confirm
        )
    _confirm(
        connection,
        report,
        (
            f"Roll back {len(prepared.plan)} migration(s) on {options.database!r} in "
            f"{report.environment} ({', '.join(planning.plan_labels(prepared.plan))})?"
        ),
        options=options,
        confirm=confirm,
    )
    # The executor planned before the lock creates migrator's tables if needed: no graph
    # is built for that alone.
    with locked(connection, options=options, progress=progress, executor=prepared.executor):
        adapter = ProgressAdapter(progress)
        prepared = _revalidated(request, connection, prepared, options=options, adapter=adapter)
        if prepared.plan:
            _unapply(prepared, adapter, options=options, progress=progress)
    return prepared.report


def _revalidated(
    request: RollbackRequest,
    connection: BaseDatabaseWrapper,
    confirmed: _Prepared,
    *,
    options: RunOptions,
    adapter: ProgressAdapter | None = None,
) -> _Prepared:
    """Under the lock, plan and validate again: another run may have changed the database.

    Nothing left to do is outcome ``nothing`` (an empty plan); a plan other than the one
    confirmed (other steps, or another run to undo) is refused: nobody reviewed it.
    """
    prepared = _validated(request, connection, options=options, adapter=adapter)
    if not prepared.plan:
        prepared.report.outcome = "nothing"
        return prepared
    if _undoing(prepared) != _undoing(confirmed):
        error = RollbackRefused(
            f"The plan changed while waiting for the lock (now: "
            f"{', '.join(planning.plan_labels(prepared.plan))}); nothing was changed. "
            "Run rollback again to review it."
        )
        guard.record_refusal(
            connection, command="rollback", arguments=options.arguments, error=error
        )
        raise error
    return prepared


def _undoing(prepared: _Prepared) -> tuple[int | None, list[str]]:
    source = prepared.source_run
    return (source.pk if source else None), planning.plan_labels(prepared.plan)


def _validated(
    request: RollbackRequest,
    connection: BaseDatabaseWrapper,
    *,
    options: RunOptions,
    adapter: ProgressAdapter | None = None,
) -> _Prepared:
    """A plan that passed validation; a refusal is recorded in the audit, then raised."""
    try:
        prepared = _prepare(request, connection, adapter)
        error = prepared.report.refusal()
        if error is not None:
            prepared.report.outcome = "refused"
            raise error
    except (RollbackRefused, IntegrityViolation) as exc:
        report = getattr(exc, "report", None)
        guard.record_refusal(
            connection,
            command="rollback",
            arguments=options.arguments,
            error=exc,
            details={"problems": [p.as_dict() for p in report.problems]} if report else None,
        )
        raise
    return prepared


# Planning and validation -------------------------------------------------------------------


def _prepare(
    request: RollbackRequest,
    connection: BaseDatabaseWrapper,
    progress_callback: ProgressAdapter | None = None,
) -> _Prepared:
    """Resolve the request into a backward plan, describe it and validate it; change nothing."""
    connection.prepare_database()
    with integrity.graph_errors():  # a deleted dependency is an integrity violation (exit 2)
        executor = RollbackExecutor(connection, progress_callback)
    report = RollbackReport(
        command="rollback",
        database=connection.alias,
        environment=get_settings().environment,
        outcome="planned",
        target=request.describe(),
        mode="restore" if request.restore else "reverse",
    )
    source_run, missing = None, set()
    if request.last:
        source_run, plan, missing = _last_run_plan(executor, report)
        targets: list[MigrationTarget] = []
    else:
        targets = _resolve_target(executor.loader, request)
        plan = executor.migration_plan(targets)
        _check_backward(plan, targets, report)
    report.plan = planning.describe_plan(
        plan, connection=connection, loader=executor.loader, fake=executor.fake_keys
    )
    report.fake = [migration_label(m) for m, _ in plan if _key(m) in executor.fake_keys]
    if request.restore:  # runs no migration file: their integrity does not matter here
        _describe_restore(report, source_run)
    else:
        _validate(executor, report)
        keys = {_key(m) for m, _ in plan}
        apps = {app_label for app_label, _ in keys}
        if request.app_label:
            apps.add(request.app_label)
        _check_integrity(executor, keys | missing | _off_the_graph(executor.loader, apps), report)
    return _Prepared(executor, targets, plan, report, source_run)


def _resolve_target(loader: MigrationLoader, request: RollbackRequest) -> list[MigrationTarget]:
    """``planning.resolve_targets``, with unknown targets refused (exit 7) and close names."""
    app_label, name = request.app_label, request.migration_name
    if app_label not in loader.migrated_apps:
        raise RollbackRefused(
            f"No app with migrations is labelled {app_label!r}; "
            f"{planning.closest(app_label, sorted(loader.migrated_apps))} Nothing was changed."
        )
    try:
        return planning.resolve_targets(loader, app_label, name)
    except UnknownTarget:
        names = sorted(n for a, n in loader.disk_migrations if a == app_label)
        raise RollbackRefused(
            f"No single migration of {app_label!r} matches {name!r}; "
            f"{planning.closest(name, names)} Nothing was changed."
        ) from None


def _check_backward(
    plan: MigrationPlan, targets: list[MigrationTarget], report: RollbackReport
) -> None:
    """A target that is not applied would be migrated forwards: that is safemigrate's job."""
    forwards = [migration_label(m) for m, backwards in plan if not backwards]
    if forwards:
        target = migration_label(targets[0])
        report.problems.append(
            Problem(
                "not_applied",
                f"{target} is not applied, so there is nothing to roll back to (reaching it "
                f"would apply {', '.join(forwards)}); use safemigrate to apply migrations.",
                migration=target,
            )
        )


def last_safemigrate_run(connection: BaseDatabaseWrapper) -> Run | None:
    """The last safemigrate run on this database that applied anything, whatever its outcome.

    Succeeded, failed part-way or interrupted (a run killed by -9 is marked so first):
    what it applied is undone. A run still going is not one to undo, nor one that applied
    only migrator's own migrations (an upgrade of migrator), which no rollback unapplies.
    """
    if not history.has_audit_tables(connection):
        return None
    audit.mark_dead_runs(connection)
    steps = RunStep.objects.filter(run=OuterRef("pk"))
    runs = Run.objects.using(connection.alias).filter(
        command="safemigrate",
        outcome__in=[Run.Outcome.SUCCEEDED, Run.Outcome.FAILED, Run.Outcome.INTERRUPTED],
    )
    runs = runs.exclude(
        Exists(steps.filter(app_label=MIGRATOR_APP)), ~Exists(steps.exclude(app_label=MIGRATOR_APP))
    )
    return runs.order_by("-id").first()  # the database's order, not the hosts' clocks


def _refuse_while_a_run_goes_on(connection: BaseDatabaseWrapper, last: Run | None) -> None:
    """A safemigrate run started after ``last`` and still going (its process alive): which
    run --last means is not known until it ends, and neither is what it applied."""
    if not history.has_audit_tables(connection):
        return
    going = (
        Run.objects.using(connection.alias)
        .filter(command="safemigrate", outcome=Run.Outcome.RUNNING)
        .order_by("-id")
        .first()
    )
    if going is None or (last is not None and going.pk < last.pk):
        return
    started = going.started_at.isoformat(timespec="seconds")
    raise LockNotAcquired(
        f"safemigrate run #{going.pk} on {connection.alias!r} is still going (started "
        f"{started} by {going.actor}@{going.host}, pid {going.pid}); --last undoes a run once "
        "it has ended: wait for it (or stop it), then run the rollback again."
    )


def _last_run_plan(
    executor: RollbackExecutor, report: RollbackReport
) -> tuple[Run, MigrationPlan, set[MigrationKey]]:
    """The migrations the last safemigrate run applied that are still applied, newest first.

    Migrations that run only faked are unapplied as fake (``executor.fake_keys``): the run
    never ran their operations, so undoing it must not run their reverse either. migrator's
    own migrations are left alone: its audit tables outlive every rollback. Also returns
    the applied migrations whose file is gone, for the integrity check to name.
    """
    connection, loader = executor.connection, executor.loader
    run = last_safemigrate_run(connection)
    _refuse_while_a_run_goes_on(connection, run)
    if run is None:
        raise RollbackRefused(
            f"No safemigrate run is recorded on {connection.alias!r}, so --last has "
            "nothing to undo; give a target: rollback <app_label> <migration_name|zero>."
        )
    report.source_run_id, report.source_run_outcome = run.pk, run.outcome
    left = history.left_part_way(run, loader)
    if left:
        report.warnings.append(f"{left} This rollback does not undo it.")
    if report.mode == "restore":
        report.restore_backup_id = run.backup_id or None
    steps = run.steps.filter(direction=RunStep.Direction.APPLY).exclude(app_label=MIGRATOR_APP)
    applied = loader.applied_migrations
    keys = {(s.app_label, s.name) for s in steps if (s.app_label, s.name) in applied}
    faked = {(s.app_label, s.name) for s in steps if s.fake} & keys
    missing = {key for key in keys if key not in loader.graph.nodes}
    keys -= missing
    keys |= _squashes_to_unapply(loader, run, missing, report)
    executor.fake_keys = _only_recorded(connection, run, keys, faked, report)
    full_plan = executor.migration_plan(loader.graph.leaf_nodes(), clean_start=True)
    ordered = [_key(migration) for migration, _ in full_plan if _key(migration) in keys]
    later: dict[MigrationKey, MigrationKey] = {}  # applied since -> the latest it depends on
    for key in ordered:
        for node in loader.graph.backwards_plan(key):
            if node in applied and node not in keys:
                later[node] = key
    for dependent, key in sorted(later.items()):
        report.problems.append(
            Problem(
                "depended_on",
                f"{migration_label(dependent)} was applied after run #{run.pk} and depends "
                f"on {migration_label(key)}; roll back to an explicit target instead "
                "(rollback <app_label> <migration_name>).",
                migration=migration_label(dependent),
            )
        )
    plan = [(loader.graph.nodes[key], True) for key in reversed(ordered)]
    return run, plan, missing


def _only_recorded(
    connection: BaseDatabaseWrapper,
    run: Run,
    keys: set[MigrationKey],
    faked: set[MigrationKey],
    report: RollbackReport,
) -> frozenset[MigrationKey]:
    """Which of ``keys`` the run only recorded as applied: they are unapplied as fake.

    The run's own record first: a ``--fake`` run only recorded them all, whoever rebuilt
    its steps (a migrator older than its migration 0004 rebuilt a killed run's as real
    applies). A ``--fake-initial`` run's steps say which (``faked``), unless it did not
    finish and they were rebuilt from hash records that cannot say: those are a problem,
    as their reverse would drop a table the run may only have adopted.
    """
    if run.arguments.get("fake"):
        return frozenset(keys)
    if run.arguments.get("fake_initial") and run.outcome != Run.Outcome.SUCCEEDED:
        unknown = audit.unrecorded_fakes(connection, keys - faked)
        if unknown:
            report.problems.append(
                Problem(
                    "fake_unknown",
                    f"Run #{run.pk} ran with --fake-initial, and a migrator older than its "
                    f"migration 0004 recorded it: nothing says whether it only faked "
                    f"{describe_keys(unknown)}, so --last runs no reverse that could drop "
                    "a table the run adopted; if the run created their tables, roll back "
                    "to an explicit target (rollback <app_label> <migration_name>), if "
                    "they were there before it, unrecord them ('python manage.py migrate "
                    "<app_label> <migration_name> --fake').",
                )
            )
    return frozenset(faked)


def _squashes_to_unapply(
    loader: MigrationLoader, run: Run, gone: set[MigrationKey], report: RollbackReport
) -> set[MigrationKey]:
    """The squashes that stand for migrations the run applied (``gone`` from the graph once
    their squash was all applied): unapplied whole where the run applied all they replace,
    else a problem, as unapplying one would undo what the run did not apply. ``gone`` keeps
    the rest (files missing, for the integrity check)."""
    squashes = set()
    for key, squash in loader.replacements.items():
        replaced = {tuple(r) for r in squash.replaces}
        ours = replaced & gone
        if not ours or key not in loader.graph.nodes:
            continue
        gone -= ours
        others = replaced - ours
        if not others:
            squashes.add(key)
            continue
        report.problems.append(
            Problem(
                "squashed",
                f"Run #{run.pk} applied {describe_keys(ours)}, which squash "
                f"{migration_label(key)} now stands for together with {describe_keys(others)}, "
                "applied before it; roll back to an explicit target (rollback <app_label> "
                "<migration_name>), or restore the run's backup (rollback --last --restore).",
                migration=migration_label(key),
            )
        )
    return squashes


def _off_the_graph(loader: MigrationLoader, apps: set[str]) -> set[MigrationKey]:
    """Applied migrations of ``apps`` that are not in the graph: a squash stands for them, or
    their file is gone, which the integrity check refuses (a rollback cannot see what they
    depend on)."""
    return {
        key for key in loader.applied_migrations if key[0] in apps and key not in loader.graph.nodes
    }


def _validate(executor: RollbackExecutor, report: RollbackReport) -> None:
    """Reasons to refuse (own tables, irreversible steps) and what the rollback destroys."""
    real = [planned for planned in report.plan if planned.label not in report.fake]
    own = [planned.label for planned in real if planned.app_label == MIGRATOR_APP]
    if own:
        report.problems.append(
            Problem(
                "own_tables",
                f"rollback does not unapply migrator's own migrations ({', '.join(own)}): its "
                "audit and lock records live there; use Django's migrate for that.",
            )
        )
    irreversible = []
    for planned in real:
        for operation in planned.operations:
            if not operation.reversible:
                irreversible.append(planned.label)
                report.problems.append(
                    Problem(
                        "irreversible",
                        f"{planned.label} cannot be unapplied: {operation.description!r} has no "
                        "reverse.",
                        migration=planned.label,
                        operation=operation.description,
                    )
                )
            for finding in operation.findings:
                labelled = LabelledFinding(planned.label, operation.description, finding)
                if finding.data_loss:
                    report.data_loss.append(labelled)
                elif finding.code in NOT_RESTORED_CODES and finding.rows != 0:
                    report.not_restored.append(labelled)
    if irreversible:
        report.hint = _restore_hint(executor.connection, irreversible)


def _restore_hint(connection: BaseDatabaseWrapper, labels: list[str]) -> str:
    """Point at the backup taken before the irreversible migrations were applied, if any."""
    last = last_safemigrate_run(connection)
    if last is not None and last.backup_id:
        undone = {f"{s.app_label}.{s.name}" for s in last.steps.filter(direction="apply")}
        if set(labels) <= undone:
            return (
                f"Run #{last.pk} applied them after taking backup {last.backup_id}: "
                "'python manage.py rollback --last --restore' restores it instead."
            )
    steps = RunStep.objects.using(connection.alias).filter(
        direction=RunStep.Direction.APPLY, run__outcome=Run.Outcome.SUCCEEDED
    )
    for step in steps.exclude(run__backup_id="").select_related("run").order_by("-id"):
        if f"{step.app_label}.{step.name}" in labels:
            return (
                f"Backup {step.run.backup_id} was taken before run #{step.run.pk} applied "
                f"{step.app_label}.{step.name}: 'python manage.py restore "
                f"{step.run.backup_id}' brings that state back (later changes are lost)."
            )
    return (
        "No backup taken before them is recorded: give each operation a reverse "
        "(reverse_code, reverse_sql), or restore a backup of your own."
    )


def _check_integrity(
    executor: RollbackExecutor, keys: set[MigrationKey], report: RollbackReport
) -> None:
    """The files that will run backwards must be the ones that ran forwards (exit 2)."""
    if not keys:
        return
    verified = integrity.verify(executor.connection, executor.loader, only=keys, check_models=False)
    report.problems += [
        Problem("integrity", problem.line(), migration=problem.migration)
        for problem in verified.errors
    ]
    report.warnings += integrity.warning_summaries(verified)


def _describe_restore(report: RollbackReport, run: Run) -> None:
    """What ``--last --restore`` costs: everything written since the backup is replaced."""
    if not report.restore_backup_id:
        report.problems.append(
            Problem(
                "no_backup",
                f"Run #{run.pk} took no backup, so there is nothing to restore; undo it with "
                "reverse operations ('rollback --last') or restore another backup "
                "('backup --list', 'restore ID').",
            )
        )
        return
    replaced = Finding(
        code="restore_replaces_data",
        severity="danger",
        data_loss=True,
        message=(
            f"Restoring backup {report.restore_backup_id} replaces all data in "
            f"{report.database!r} with its state before run #{run.pk} (started "
            f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}): every change since then is lost."
        ),
        hint="Take a backup first ('python manage.py backup') if what changed since matters.",
    )
    report.data_loss.append(LabelledFinding(None, None, replaced))


def _key(migration: Migration) -> MigrationKey:
    return (migration.app_label, migration.name)


# Execution ---------------------------------------------------------------------------------


def _unapply(
    prepared: _Prepared,
    adapter: ProgressAdapter,
    *,
    options: RunOptions,
    progress: ProgressCallback,
) -> None:
    """Open the run, take the backup, unapply through Django's executor, record the outcome."""
    executor, report = prepared.executor, prepared.report
    connection = executor.connection
    details: dict[str, Any] = {
        "target": report.target,
        "plan": planning.plan_labels(prepared.plan),
        "risks": risks.audit_summary(report.plan),
    }
    if report.source_run_id is not None:
        details["undoes_run"] = report.source_run_id
    if report.data_loss:
        details["data_loss"] = [item.finding.message for item in report.data_loss]
    with recorded(
        connection, command="rollback", arguments=options.arguments, details=details
    ) as run:
        report.run_id, executor.run = run.pk, run
        report.backup_id = runner.backup_before(
            run, report, options=options, progress=progress, reason="pre-rollback"
        )
        try:
            runner.execute_plan(
                executor,
                run,
                report,
                adapter,
                targets=prepared.targets,
                plan=prepared.plan,
                options=options,
            )
        except MigrationFailed as exc:
            raise _failure(exc, report, run) from exc.__cause__ or exc
        finally:
            run.details["unapplied"] = report.unapplied
            if report.outcome != Run.Outcome.SUCCEEDED:
                run.details["remaining"] = report.remaining


def _failure(exc: MigrationFailed, report: RollbackReport, run: Run) -> MigrationFailed:
    """Say which migrations were unapplied, which remain, and how to go on or go back."""
    failed = report.failed_migration or "a migration"
    cause = exc.__cause__ or exc
    interrupted = isinstance(exc, RunInterrupted)
    if interrupted:
        by = "Ctrl-C" if isinstance(cause, KeyboardInterrupt) else "SIGTERM"
        what = f"Interrupted by {by} while unapplying {failed}"
    else:
        what = f"Failed while unapplying {failed} ({type(cause).__name__}: {cause})"
    atomic = next((p.atomic for p in report.plan if p.label == report.failed_migration), True)
    rolled_back = (
        "its transaction was rolled back"
        if atomic
        else "it is not atomic: check what it changed by hand"
    )
    restore = (
        f" or restore the backup taken before it: 'python manage.py restore {report.backup_id}'"
        if report.backup_id
        else ""
    )
    error_class = RunInterrupted if interrupted else MigrationFailed
    message = (
        f"{what}; {rolled_back}. "
        f"Unapplied: {', '.join(report.unapplied) or 'none'}. "
        f"Still applied: {', '.join(report.remaining)}. "
        f"{'Run' if interrupted else 'Fix the cause and run'} "
        f"'rollback {report.target}' again to continue{restore}."
    )
    error = error_class(message)
    error.report = report  # type: ignore[attr-defined]
    run.error, run.failed_migration = message, failed  # recorded() closes the run with them
    return error


# Restoring the last run's backup -----------------------------------------------------------


def _restore(
    request: RollbackRequest,
    prepared: _Prepared,
    connection: BaseDatabaseWrapper,
    *,
    options: RunOptions,
    progress: ProgressCallback,
    confirm: ConfirmCallback | None,
) -> RollbackReport:
    """``--last --restore``: put back the backup the last safemigrate run took first."""
    report, run = prepared.report, prepared.source_run
    with restore.checked_restore(
        report.restore_backup_id,
        database=options.database,
        safety_backup=options.backup is not False,
    ) as checked:
        _confirm(
            connection,
            report,
            (
                f"Restore backup {report.restore_backup_id} into {options.database!r} in "
                f"{report.environment}, undoing run #{run.pk}?"
            ),
            options=options,
            confirm=confirm,
        )
        details = {
            "target": report.target,
            "undoes_run": run.pk,
            "restored_backup": report.restore_backup_id,
            "unapplied": [planned.label for planned in report.plan],
        }
        # One lock around both records: the rollback's is open while the restore runs. The
        # parallel route's new database fills meanwhile (dropped if another run undid it).
        with (
            restore.begun_ahead(checked, progress),
            locked(connection, options=options, progress=progress, executor=prepared.executor),
        ):
            again = _revalidated(request, connection, prepared, options=options)
            if not again.plan:  # another run undid it meanwhile
                return again.report
            with recorded(
                connection, command="rollback", arguments=options.arguments, details=details
            ) as record:
                restored = restore.restore_checked(checked, progress)
                record.pk = keepaudit.find_run(connection, record).pk  # merged by the restore
                record.details["restore_run"] = restored.run_id
                report.backup_id = restored.safety_backup_id
                record.backup_id = report.backup_id or ""
    report.run_id, report.outcome = record.pk, Run.Outcome.SUCCEEDED
    return report


def _confirm(
    connection: BaseDatabaseWrapper,
    report: RollbackReport,
    question: str,
    *,
    options: RunOptions,
    confirm: ConfirmCallback | None,
) -> None:
    """The production guard for a rollback, with its data-loss report."""
    guard.require_confirmation(
        connection,
        question=question,
        assume_yes=options.assume_yes,
        confirm=confirm,
        data_loss=report.data_loss,
        allow_data_loss=options.allow_data_loss,
        command="rollback",
        arguments=options.arguments,
    )
