"""Orchestration: plan -> verify -> guard -> lock -> backup -> execute -> record.

Everything a command does is callable from here, so a deploy script can import it:

    report = runner.safemigrate(options=RunOptions(database="default", assume_yes=True))
"""

import gc
import io
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

from django.apps import apps as global_apps
from django.core.management.commands.migrate import Command as MigrateCommand
from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ModelState, ProjectState
from django.db.models import Model

from migrator import (
    audit,
    backup,
    guard,
    integrity,
    locking,
    operations,
    planning,
    risks,
    secrets,
    stages,
)
from migrator.audit import recorded
from migrator.conf import get_settings
from migrator.exceptions import (
    MIGRATION_CODE_ERRORS,
    ConfirmationRequired,
    IntegrityViolation,
    InvalidRequest,
    LockNotAcquired,
    MigrationFailed,
    MigratorError,
    RunInterrupted,
)
from migrator.executor import RecordingExecutor
from migrator.lifecycle import ProgressAdapter, bootstrap, locked
from migrator.models import MigrationHash, Run
from migrator.planning import PlannedMigration
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
    Stage,
    ignore_progress,
    migration_label,
)


def migration_plan(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    database: str = DEFAULT_DB_ALIAS,
    stage: Stage | None = None,
    run_syncdb: bool = False,
) -> tuple[list[MigrationTarget], MigrationPlan, RecordingExecutor, list[stages.HeldBack]]:
    """Resolve a ``migrate``-style target into a forward plan, checking the history first.

    With ``stage``, the plan keeps what that deploy stage applies; the rest is held back.
    migrator's own pending migrations come first in it, whatever the target or stage:
    the run applies them before anything else (``lifecycle.bootstrap``).
    """
    connection = connections[database]
    connection.prepare_database()
    with integrity.graph_errors():  # a deleted dependency is an integrity violation (exit 2)
        executor = RecordingExecutor(connection)
    planning.check_history(executor.loader)
    targets = planning.resolve_targets(
        executor.loader, app_label, migration_name, run_syncdb=run_syncdb
    )
    plan, held = stages.select(planning.forward_plan(executor, targets), executor.loader, stage)
    held = [item for item in held if not item.label.startswith(f"{MIGRATOR_APP}.")]
    return targets, planning.own_first(executor, plan), executor, held


def plan_report(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    database: str = DEFAULT_DB_ALIAS,
    stage: Stage | None = None,
) -> RunReport:
    """What ``safemigrate`` would do, changing nothing (``--plan``)."""
    _, plan, executor, held = migration_plan(
        app_label, migration_name, database=database, stage=stage
    )
    return RunReport(
        command="safemigrate",
        database=database,
        environment=get_settings().environment,
        outcome="planned",
        plan=planning.describe_plan(
            plan, connection=executor.connection, loader=executor.loader, stage=stage
        ),
        stage=stage,
        held_back=held,
    )


def plan_sql(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    database: str = DEFAULT_DB_ALIAS,
    stage: Stage | None = None,
) -> list[planning.SqlStep]:
    """The SQL each planned migration would run, as ``sqlmigrate`` shows it (``--sql``)."""
    _, plan, executor, _ = migration_plan(app_label, migration_name, database=database, stage=stage)
    return planning.plan_sql(executor.loader, plan)


def safemigrate(
    app_label: str | None = None,
    migration_name: str | None = None,
    *,
    options: RunOptions,
    progress: ProgressCallback = ignore_progress,
    confirm: ConfirmCallback | None = None,
) -> RunReport:
    """Apply the plan for a ``migrate``-style target safely, and return what happened."""
    connection = connections[options.database]
    targets, plan, executor, held = migration_plan(
        app_label,
        migration_name,
        database=options.database,
        stage=options.stage,
        run_syncdb=options.run_syncdb,
    )
    unmigrated = sorted([app_label] if app_label else executor.loader.unmigrated_apps)
    syncing = _unsynchronised(connection, unmigrated) if options.run_syncdb else []
    # Before anything else, even with nothing to do: an edited applied file is exit 2.
    try:
        integrity.require_verified(connection, executor.loader, progress=progress)
    except IntegrityViolation as exc:  # who was stopped, and why, stays in the audit
        guard.record_refusal(
            connection,
            command="safemigrate",
            arguments=options.arguments,
            error=exc,
            details={"refused_by": "integrity"},
        )
        raise
    report = RunReport(
        command="safemigrate",
        database=options.database,
        environment=get_settings().environment,
        outcome="nothing",
        plan=planning.describe_plan(
            plan, connection=connection, loader=executor.loader, stage=options.stage
        ),
        stage=options.stage,
        held_back=held,
    )
    report_held_back(held, progress)
    try:
        _apply(
            executor,
            report,
            targets,
            plan,
            syncing,
            options=options,
            progress=progress,
            confirm=confirm,
        )
    except MigratorError as exc:
        exc.report = report  # type: ignore[attr-defined]  # for the --json failure document
        raise
    return report


def _apply(
    executor: RecordingExecutor,
    report: RunReport,
    targets: list[MigrationTarget],
    plan: MigrationPlan,
    syncing: list[str],
    *,
    options: RunOptions,
    progress: ProgressCallback,
    confirm: ConfirmCallback | None,
) -> None:
    """Ask, lock, re-plan, record, back up and apply: safemigrate after its checks."""
    connection = executor.connection
    if not plan and not syncing:
        _complete_post_migrate(executor, options, progress)
        return
    asking = confirm is not None and not options.assume_yes and get_settings().needs_confirmation
    report_risks(report.plan, progress, whole_plan=asking)
    guard.refuse_blocking_risks(
        connection, report.plan, command="safemigrate", arguments=options.arguments
    )
    where = f"{options.database!r} in {report.environment}"
    questions = [f"Apply {len(plan)} migration(s) to {where}?"] if plan else []
    if syncing:  # only what --run-syncdb would create: nothing asked for nothing
        questions.append(f"Create the tables of {', '.join(syncing)} (no migrations) in {where}?")
    guard.require_confirmation(
        connection,
        question=" ".join(questions),
        assume_yes=options.assume_yes,
        confirm=confirm,
        data_loss=() if options.fake else risks.data_loss_findings(report.plan),
        allow_data_loss=options.allow_data_loss,
        command="safemigrate",
        arguments=options.arguments,
    )
    with locked(connection, options=options, progress=progress, executor=executor) as created:
        adapter = ProgressAdapter(progress)
        executor.progress_callback = adapter
        report.own_first = planning.plan_labels(created)  # applied already, by locked()
        bootstrapped = set(report.own_first)
        confirmed = [planned.label for planned in report.plan if planned.label not in bootstrapped]
        # Re-plan: another run may have won.
        plan, report.held_back = stages.select(
            planning.forward_plan(executor, targets), executor.loader, options.stage
        )
        replanned = planning.plan_labels(plan)
        _refuse_changed_plan(connection, confirmed, replanned, options=options)
        own = [planned for planned in report.plan if planned.label in bootstrapped]
        report.plan = [planned for planned in report.plan if planned.label not in bootstrapped]
        if replanned != confirmed:  # shrank: another run applied part of it
            report.plan = planning.describe_plan(
                plan, connection=connection, loader=executor.loader, stage=options.stage
            )
        syncing = _unsynchronised(connection, syncing)  # of those confirmed, still missing
        if not plan and not syncing and not created:
            return
        details = {"risks": risks.audit_summary([*own, *report.plan])}  # all it applies
        with recorded(
            connection, command="safemigrate", arguments=options.arguments, details=details
        ) as run:
            report.run_id, executor.run = run.pk, run
            executor.claim_bootstrapped(created)
            if plan or syncing:  # not for migrator's own alone: they are applied already
                report.backup_id = backup_before(run, report, options=options, progress=progress)
            execute_plan(
                executor,
                run,
                report,
                adapter,
                targets=targets,
                plan=plan,
                options=options,
                created_first=created,
                syncing=syncing,
            )


def _refuse_changed_plan(
    connection, confirmed: list[str], replanned: list[str], *, options: RunOptions
) -> None:
    """Exit 3 when the plan made under the lock holds a step nobody confirmed.

    A plan that only shrank (another run applied part of it meanwhile) goes ahead; one
    that grew or changed order (new files, or another host rolled back) was never shown.
    """
    remaining = iter(confirmed)
    if all(label in remaining for label in replanned):  # an ordered subsequence
        return
    message = (
        f"The plan changed while waiting for the lock (now: {', '.join(replanned)}); "
        "nothing was applied. Run safemigrate again to review it."
    )
    guard.record_refusal(
        connection, command="safemigrate", arguments=options.arguments, error=message
    )
    raise ConfirmationRequired(message)


def _complete_post_migrate(
    executor: RecordingExecutor, options: RunOptions, progress: ProgressCallback
) -> None:
    """Nothing to apply: send pre_migrate and post_migrate all the same, as ``migrate`` does.

    So a run killed inside post_migrate (content types, permissions) is completed by the
    next one. Only when the lock is free at once, without waiting: a run holding it
    sends post_migrate itself. Runs whose process died are marked interrupted meanwhile.
    """
    connection = executor.connection
    try:
        with locking.migration_lock(connection, timeout=0):
            bootstrap(connection, progress, executor=executor)  # tables faked away
            audit.mark_abandoned_runs(connection, progress)
            _report_stopped_undos(connection, progress)
            state = executor._create_project_state(with_applied_migrations=True)
            _emit(emit_pre_migrate_signal, connection, options, state, [], progress)
            _emit(emit_post_migrate_signal, connection, options, _rendered(state), [], progress)
    except LockNotAcquired:
        return


def backup_before(
    run: Run,
    report: RunReport,
    *,
    options: RunOptions,
    progress: ProgressCallback,
    reason: str = "pre-migrate",
) -> str | None:
    """Back up before changing anything, per ``options.backup`` (None: the setting).

    A backup that fails stops the run before anything is applied (exit 6).
    """
    wanted = options.backup
    if wanted is None:
        settings = get_settings()
        rollback = reason == "pre-rollback"
        wanted = settings.backup_before_rollback if rollback else settings.backup_before_migrate
    if not wanted:
        return None
    try:
        manifest = backup.create_backup(options.database, reason=reason, run=run, progress=progress)
    except (KeyboardInterrupt, RunInterrupted) as exc:  # the run is interrupted, not failed
        by = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        raise RunInterrupted(
            f"Interrupted by {by} during the backup taken first; nothing was changed, and the "
            "run is recorded as interrupted."
        ) from exc
    except MigratorError as exc:
        report.outcome, report.error = Run.Outcome.FAILED, secrets.mask(str(exc))
        raise backup.BackupFailed(f"Nothing was changed: the backup failed. {exc}") from exc
    run.backup_id = manifest.id
    run.save(update_fields=["backup_id"])
    return manifest.id


def _report_stopped_undos(connection: BaseDatabaseWrapper, progress: ProgressCallback) -> None:
    """A batched migration whose rollback stopped half-way is still recorded as applied:
    nothing is pending, so say what is, and how to finish it."""
    for batch in operations.progress_in_flight(connection):
        if batch["direction"] == operations.UNAPPLY:
            progress(
                ProgressEvent(
                    "warning",
                    message=f"{batch['migration']} was being unapplied in batches when its "
                    f"rollback stopped ({batch['rows_done']:,} rows undone); it is still "
                    "recorded as applied. Run that rollback again to finish it: it resumes.",
                )
            )


def report_held_back(held: list[stages.HeldBack], progress: ProgressCallback) -> None:
    """Name each migration ``--stage before-deploy`` leaves for after the code deploy."""
    if held:
        lines = "".join(f"\n  {item.label}: {item.reason}" for item in held)
        progress(
            ProgressEvent(
                "held_back",
                message=f"Held back until after the deploy ({len(held)}):{lines}",
                data={"held_back": [item.as_dict() for item in held]},
            )
        )


def report_risks(
    plan: list[PlannedMigration], progress: ProgressCallback, *, whole_plan: bool = False
) -> None:
    """Report the plan's findings before anything is asked or changed.

    Warning and danger findings are to review; info ones (tables that are new or empty,
    migrations of installed packages) are shown at verbosity 2. With ``whole_plan`` (an
    operator is about to be asked), every migration and operation of the plan is reported,
    with all its findings. Muted findings are not counted.
    """
    shown = [item.finding for item in risks.plan_findings(plan) if not item.finding.muted]
    to_review = sum(finding.severity != "info" for finding in shown)
    if not shown and not whole_plan:
        return
    counted = f"{to_review} to review (warning or danger), {len(shown) - to_review} info"
    message = f"Risks in this plan: {counted}."
    if whole_plan:
        message = f"Plan: {len(plan)} migration(s) to apply; risks: {counted}."
    progress(
        ProgressEvent(
            "risks",
            message=message,
            data={
                "plan": plan,
                "minimum": "info" if whole_plan else "warning",
                "to_review": to_review,
            },
        )
    )


def execute_plan(
    executor: RecordingExecutor,
    run: Run,
    report: RunReport,
    adapter: ProgressAdapter,
    *,
    targets: list[MigrationTarget],
    plan: MigrationPlan,
    options: RunOptions,
    created_first: MigrationPlan | None = None,
    syncing: list[str] | None = None,
) -> None:
    """Apply or unapply a plan with migrate's signals; the report and run say how it ended.

    ``created_first``: migrator's own migrations, applied by this run before the plan.
    ``syncing``: apps without migrations whose tables are created first (``--run-syncdb``).
    """
    connection = executor.connection
    phase = ""  # where the run is once every migration of the plan committed
    try:
        with (
            _long_lived_objects_frozen(),
            operations.reporting_progress(adapter.progress),
        ):
            unseen = _unseen(created_first or [], plan, executor.loader)
            pre_state = executor._create_project_state(with_applied_migrations=True)
            if unseen:
                for key in [key for key in pre_state.models if key[0] == MIGRATOR_APP]:
                    pre_state.remove_model(*key)
            _emit(emit_pre_migrate_signal, connection, options, pre_state, plan, adapter.progress)
            if syncing:
                _sync_apps(connection, syncing, adapter.progress)
            post_state = executor.migrate(
                targets,
                plan=plan,
                state=pre_state.clone(),
                fake=options.fake,
                fake_initial=options.fake_initial,
            )
            phase = "during post_migrate"
            for migration, _ in unseen:  # post_migrate sees all, as after migrate
                post_state = migration.mutate_state(post_state, preserve=False)
            post_state = _rendered(post_state)
            _emit(emit_post_migrate_signal, connection, options, post_state, plan, adapter.progress)
        phase = "while recording the run's steps"
        executor.save_steps()
    except (KeyboardInterrupt, RunInterrupted) as exc:
        message = _interrupted(adapter, phase)
        _fail(executor, run, report, adapter, "interrupted", message)  # the audit's error too
        raise RunInterrupted(message) from exc
    except MigratorError as exc:
        _fail(executor, run, report, adapter, "failed", str(exc) or "Stopped")
        raise
    except MIGRATION_CODE_ERRORS as exc:
        _fail(executor, run, report, adapter, "failed", f"{type(exc).__name__}: {exc}")
        lines = (line.strip() for line in report.error.splitlines() if line.strip())
        said = "; ".join(lines).rstrip(".")
        if adapter.current is None:  # a lost database in post_migrate, a handler's bug, ...
            where, stays = _outside_a_migration(adapter, phase)
            raise MigrationFailed(
                f"Failed {where}: {said}; {stays}. Fix it and run safemigrate again to finish."
            ) from exc
        raise MigrationFailed(  # one line; the audit keeps the database's DETAIL/HINT lines
            f"Migration {report.failed_migration} failed: {said}. "
            f"{_what_stays(adapter, 'It')}; {len(report.steps)} earlier "
            "migration(s) stay applied. Fix it and run safemigrate again."
        ) from exc
    report.steps = adapter.steps
    report.outcome = Run.Outcome.SUCCEEDED


def _unsynchronised(connection: BaseDatabaseWrapper, app_labels: list[str]) -> list[str]:
    """The apps without migrations that ``--run-syncdb`` would create a table for: a
    model's table is missing, as ``migrate``'s own ``sync_apps`` decides."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    convert = connection.introspection.identifier_converter

    def missing(model: type[Model]) -> bool:
        return model._meta.can_migrate(connection) and convert(model._meta.db_table) not in tables

    return [
        label
        for label in app_labels
        if any(
            missing(model)
            for model in router.get_migratable_models(
                global_apps.get_app_config(label), connection.alias, include_auto_created=False
            )
        )
    ]


def _sync_apps(
    connection: BaseDatabaseWrapper, app_labels: list[str], progress: ProgressCallback
) -> None:
    """Create the tables of apps without migrations, with ``migrate --run-syncdb``'s own code."""
    migrate = MigrateCommand(stdout=io.StringIO(), stderr=io.StringIO())
    migrate.verbosity = 0
    migrate.sync_apps(connection, app_labels)
    synced = ", ".join(app_labels)
    progress(ProgressEvent("syncdb", message=f"Synchronized apps without migrations: {synced}"))


def _unseen(
    created_first: MigrationPlan, plan: MigrationPlan, loader: MigrationLoader
) -> MigrationPlan:
    """migrator's own migrations, applied first by this run, that the plan need not see.

    ``migrate`` would create migrator's tables at their place in the plan, so on a fresh
    database the migrations before them run without migrator's models in the project
    state. safemigrate creates them first, to record the run; its plan still gets the
    smaller state (each re-render of the state pays for every model in it) unless one of
    its migrations depends on migrator's. Only when this run created all of them: after
    ``migrate migrator 0001`` the tables exist, and the state must hold them.
    """
    needed = {(migration.app_label, migration.name) for migration, _ in created_first}
    if needed != {key for key in loader.applied_migrations if key[0] == MIGRATOR_APP}:
        return []
    for migration, _ in plan:
        node = loader.graph.node_map[(migration.app_label, migration.name)]
        if any(parent.key in needed for parent in node.parents):
            return []
    return created_first


def _fail(
    executor: RecordingExecutor,
    run: Run,
    report: RunReport,
    adapter: ProgressAdapter,
    outcome: str,
    error: str,
) -> None:
    with suppress(DatabaseError):  # locked or lost: rebuilt as the run closes, or next run
        executor.save_steps()
    report.steps = adapter.steps
    report.outcome = outcome
    report.failed_migration = migration_label(adapter.current) if adapter.current else ""
    report.error = secrets.mask(error)  # no credentials from an exception's text
    run.error, run.failed_migration = report.error, report.failed_migration  # for recorded()


def _interrupted(adapter: ProgressAdapter, phase: str) -> str:
    """What Ctrl-C or SIGTERM stopped: the migration in progress, or none (between two
    migrations, in pre_ or post_migrate), every migration the run applied committed."""
    if adapter.current is not None:
        return (
            f"Interrupted{_at(adapter)}; {_what_stays(adapter, 'that migration')} and "
            f"{len(adapter.steps)} earlier one(s) stay applied. "
            f"{'Run' if _rolled_back(adapter) else 'Then run'} safemigrate again to finish."
        )
    where, stays = _outside_a_migration(adapter, phase)
    return f"Interrupted {where}; {stays}. Run safemigrate again to finish."


def _outside_a_migration(adapter: ProgressAdapter, phase: str) -> tuple[str, str]:
    """Where a run stopped with no migration in progress (``phase`` once its plan was
    applied), and what stays: every migration it applied committed."""
    applied = len(adapter.steps)
    where = phase or "before the first migration"
    if applied and not phase:
        where = f"after {adapter.steps[-1].migration}"
    stays = "no migration was applied"
    if applied:
        stays = f"the {applied} migration(s) this run applied all committed and stay applied"
    return where, stays


def _rolled_back(adapter: ProgressAdapter) -> bool:
    """Whether the migration a run stopped in was rolled back whole: it is atomic. (Stopped
    in none, the run is described by ``_outside_a_migration``.)"""
    return adapter.current.atomic


def _what_stays(adapter: ProgressAdapter, it: str) -> str:
    """What became of the migration a run stopped in."""
    if _rolled_back(adapter):
        return f"{it} was rolled back"
    return (
        f"{it} is not atomic: what it did before it stopped stays, not recorded as applied "
        "(check the database by hand)"
    )


def _at(adapter: ProgressAdapter) -> str:
    return f" during {migration_label(adapter.current)}" if adapter.current else ""


def _emit(
    signal_sender,
    connection,
    options: RunOptions,
    state: ProjectState,
    plan,
    progress: ProgressCallback,
) -> None:
    """Send migrate's pre_ or post_migrate signal; its lines (verbosity 2) as progress."""
    signal_sender(
        options.verbosity,
        options.interactive,
        connection.alias,
        apps=state.apps,
        plan=plan,
        stdout=_ProgressLines(progress),
    )


class _ProgressLines:
    """A ``stdout`` for Django's signal senders, which write lines without their ending."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.progress(ProgressEvent("migrate_signal", message=line))

    def flush(self) -> None:
        """Nothing is buffered."""


def _rendered(post_state: ProjectState) -> ProjectState:
    """Re-render real apps' models with relationships, as ``migrate`` does before post_migrate."""
    post_state.clear_delayed_apps_cache()
    post_apps = post_state.apps
    with post_apps.bulk_update():
        model_keys = []
        for model_state in post_apps.real_models:
            model_key = model_state.app_label, model_state.name_lower
            model_keys.append(model_key)
            post_apps.unregister_model(*model_key)
    post_apps.render_multiple(
        [ModelState.from_model(global_apps.get_model(*model)) for model in model_keys]
    )
    return post_state


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off what lives through the whole run while it applies.

    Applying migrations renders model classes by the thousand, which sets off full
    collections; each would walk everything the process loaded (apps, the migration
    graph, the plan). ``gc.freeze()`` sets those aside until the run is over.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def baseline(database: str, *, arguments: dict[str, Any] | None = None) -> integrity.Recorded:
    """``verifymigrations --baseline``: hashes for applied migrations that have none."""
    connection = connections[database]
    with locked(connection, options=RunOptions(database=database), progress=ignore_progress):
        return integrity.baseline(database, recording=_verification(connection, arguments))


def accept(
    database: str, label: str, *, reason: str, arguments: dict[str, Any] | None = None
) -> integrity.Recorded:
    """``verifymigrations --accept``: the new hash of a deliberately edited applied file."""
    if not reason.strip():
        raise InvalidRequest("--accept needs --reason TEXT saying why the applied file was edited.")
    connection = connections[database]
    with locked(connection, options=RunOptions(database=database), progress=ignore_progress):
        recording = _verification(connection, arguments)
        # typed by a person: masked in the audit, the report and --json alike
        return integrity.accept(database, label, reason=secrets.mask(reason), recording=recording)


def prune(
    app_label: str | None,
    *,
    options: RunOptions,
    progress: ProgressCallback = ignore_progress,
    confirm: ConfirmCallback | None = None,
) -> list[str]:
    """``migrate --prune``: forget an app's applied migrations whose files are gone.

    Asked through the production guard as every change is; their ``django_migrations``
    rows and hash records are then deleted under the run lock, in one audited run (a plan
    grown meanwhile is refused). As ``migrate``, nothing is pruned while a squash replaces
    one of them (it may not be recorded as applied): a warning names it. Returns the
    pruned labels.
    """
    if not app_label:
        raise InvalidRequest("Migrations can be pruned only when an app is specified.")
    connection = connections[options.database]
    connection.prepare_database()
    with integrity.graph_errors():
        executor = RecordingExecutor(connection)
    planning.resolve_targets(executor.loader, app_label)  # an installed app with migrations
    confirmed = [migration_label(key) for key in _prunable(executor.loader, app_label, progress)]
    if not confirmed:
        return []
    guard.require_confirmation(
        connection,
        question=f"Forget {len(confirmed)} applied migration(s) whose files are gone "
        f"({', '.join(confirmed)}) on {options.database!r} in {get_settings().environment}?",
        assume_yes=options.assume_yes,
        confirm=confirm,
        command="safemigrate",
        arguments=options.arguments,
    )
    with locked(connection, options=options, progress=progress, executor=executor):
        to_prune = _prunable(executor.loader, app_label, progress)
        labels = [migration_label(key) for key in to_prune]
        _refuse_changed_plan(connection, confirmed, labels, options=options)
        if not labels:
            return []
        details = {"pruned": labels}
        with (
            recorded(
                connection, command="safemigrate", arguments=options.arguments, details=details
            ),
            transaction.atomic(using=connection.alias),
        ):
            for app, name in to_prune:
                executor.recorder.record_unapplied(app, name)
            MigrationHash.objects.using(connection.alias).filter(
                app_label=app_label, name__in=[name for _, name in to_prune]
            ).delete()
    return labels


def _prunable(
    loader: MigrationLoader, app_label: str, progress: ProgressCallback
) -> list[MigrationKey]:
    """The app's applied migrations whose files are gone; none (with a warning) while a
    squash replaces one of them."""
    gone = set(loader.applied_migrations) - set(loader.disk_migrations)
    to_prune = sorted(key for key in gone if key[0] == app_label)
    squashes = sorted(
        migration_label(key)
        for key, squash in loader.replacements.items()
        if any(tuple(replaced) in to_prune for replaced in squash.replaces)
    )
    if squashes:
        progress(
            ProgressEvent(
                "warning",
                message=f"Cannot prune: the squashed migration(s) {', '.join(squashes)} "
                "replace pruned ones and may not be recorded as applied. Run safemigrate "
                "if they are not, then remove their 'replaces' attributes.",
            )
        )
        return []
    return to_prune


def _verification(connection, arguments: dict[str, Any] | None) -> integrity.Recording:
    def recording(details: dict[str, Any]) -> AbstractContextManager[Run]:
        return recorded(
            connection, command="verifymigrations", arguments=arguments or {}, details=details
        )

    return recording
