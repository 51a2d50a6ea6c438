"""The run life cycle that every flow changing a database goes through.

``locked`` takes the run lock, creates migrator's own tables (whatever subset of its
migrations is applied) and marks runs whose process died as interrupted; inside it,
``audit.recorded`` opens the run's record and closes it exactly once with the outcome of
what happened inside, its error masked (it lives in ``audit`` so that the guard's refusals,
below this layer, are recorded by the same code). safemigrate, rollback, restore and
verifymigrations differ only in what they do inside them; none writes a run record by hand.
"""

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.db import router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration

from migrator import audit, integrity, interrupts, locking, planning, timeouts
from migrator.exceptions import IntegrityViolation, InvalidRequest, RunInterrupted
from migrator.executor import RecordingExecutor
from migrator.types import (
    MIGRATOR_APP,
    MigrationPlan,
    ProgressCallback,
    ProgressEvent,
    RunOptions,
    StepReport,
    migration_label,
)


class ProgressAdapter:
    """Turns Django's executor callbacks into ProgressEvents and step reports."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.steps: list[StepReport] = []
        self.current: Migration | None = None
        self._started = 0.0

    def __call__(
        self,
        action: str,
        migration: Migration | None = None,
        fake: bool = False,
        *,
        message: str = "",
        data: dict[str, Any] | None = None,
    ):
        label = migration_label(migration) if migration is not None else None
        duration = None
        if action in {"apply_start", "unapply_start"}:
            self.current, self._started = migration, time.monotonic()
        elif action in {"apply_success", "unapply_success"}:
            duration = time.monotonic() - self._started
            direction = "apply" if action == "apply_success" else "unapply"
            self.steps.append(StepReport(label, direction, duration, fake))
            self.current = None
        self.progress(
            ProgressEvent(
                action,
                migration=label,
                fake=fake,
                duration=duration,
                message=message,
                data=data or {},
            )
        )


@contextmanager
def locked(
    connection: BaseDatabaseWrapper,
    *,
    options: RunOptions,
    progress: ProgressCallback,
    executor: RecordingExecutor | None = None,
) -> Iterator[MigrationPlan]:
    """Hold the run lock, with migrator's tables created and killed runs marked under it.

    The one path into a changing run, shared by safemigrate and rollback. An ``executor``
    planned before the lock is brought up to date under it (another run may have won).
    Yields the plan that created migrator's tables, empty when they were there already.
    """
    with (
        interrupts_as_run_interrupted(),
        locking.migration_lock(
            connection, timeout=options.run_lock_timeout, on_wait=_report_wait(progress)
        ),
    ):
        timeouts.watch_client(connection)
        created = bootstrap(connection, progress, executor=executor)
        audit.mark_abandoned_runs(connection, progress)
        if warning := audit.revision_warning():
            progress(ProgressEvent("warning", message=warning))
        yield created


@contextmanager
def interrupts_as_run_interrupted() -> Iterator[None]:
    """SIGTERM (what deploy tools send) as Ctrl-C, and either one as RunInterrupted (exit
    5): whatever the run was doing stops, its record says ``interrupted``, and the command
    ends with one line instead of dying silently or with a traceback. One that arrives as
    the run commits what it cannot take back waits until the run is recorded as it ended
    (``interrupts.hold_until_the_run_ends``)."""
    if threading.current_thread() is not threading.main_thread():  # signals go to main
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise RunInterrupted("Stopped by SIGTERM.")

    previous = signal.signal(signal.SIGTERM, terminated)
    window = None
    try:
        with interrupts.run_window() as window:
            yield
    except (KeyboardInterrupt, RunInterrupted) as exc:
        by = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        if window is not None and window.arrived_at_the_end:
            raise RunInterrupted(
                f"{by} arrived as the run committed; it finished first (its record says how "
                "it ended), and the command stops here."
            ) from exc
        if isinstance(exc, KeyboardInterrupt):  # a flow that says more raised RunInterrupted
            raise RunInterrupted("Interrupted by Ctrl-C.") from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def bootstrap(
    connection: BaseDatabaseWrapper,
    progress: ProgressCallback,
    *,
    executor: RecordingExecutor | None = None,
) -> MigrationPlan:
    """Create migrator's own tables first when they are missing (under the lock).

    A given ``executor`` is reused rather than built again (a graph of hundreds of
    migrations is a measurable part of a run), and left current with the database.
    Returns the plan applied, empty when the tables were there already.
    """
    require_own_tables_allowed(connection)
    if executor is None:
        executor = RecordingExecutor(connection)
    else:
        with integrity.graph_errors():
            planning.refresh_applied(executor.loader)
    targets = planning.own_targets(executor.loader)
    plan = executor.migration_plan(targets)
    if not plan:
        if not _faked(executor, progress):
            return plan
        plan = executor.migration_plan(targets)
    # Hashes afterwards: until migrator's last migration, its hash table may be older.
    # They keep each one's duration: the run opened next records them as its first steps.
    # Where its tables were made before, one whose tables and columns are all there is
    # recorded, not run (faked): its records were forgotten.
    adapter = ProgressAdapter(progress)
    with executor.bootstrapping(adapter):
        executor.migrate(targets, plan=plan, fake_initial=integrity.has_hash_table(connection))
    steps = {step.migration: step for step in adapter.steps}
    with transaction.atomic(using=connection.alias):  # one commit, not one per migration
        for migration, _ in plan:
            step = steps[migration_label(migration)]
            executor.record_hash(migration, step.duration, fake=step.fake)
    planning.refresh_applied(executor.loader)
    return plan


def require_own_tables_allowed(connection: BaseDatabaseWrapper) -> None:
    """Refuse a database that ``DATABASE_ROUTERS`` keep migrator's tables off.

    migrator keeps its lock holder, hashes and audit in the database it migrates, as Django
    keeps ``django_migrations``. Where a router's ``allow_migrate`` says no, migrator's
    migrations would be recorded as applied without their tables, and every run would fail
    on them; there is no other database that could stand in (its records must commit with
    the migration they describe).
    """
    for model in apps.get_app_config(MIGRATOR_APP).get_models():
        if not router.allow_migrate_model(connection.alias, model):
            raise InvalidRequest(
                f"DATABASE_ROUTERS keep app {MIGRATOR_APP!r} off database {connection.alias!r} "
                f"({_deciding_router(connection.alias, model)}.allow_migrate), where migrator "
                f"keeps its lock, hashes and audit; let that router allow app {MIGRATOR_APP!r} "
                f"on {connection.alias!r}, or migrate that database with plain 'migrate'."
            )


def _deciding_router(alias: str, model: type) -> str:
    """The dotted name of the first router in ``DATABASE_ROUTERS`` with an opinion."""
    for deciding in router.routers:
        allow = getattr(deciding, "allow_migrate", None)
        if (
            allow is not None
            and allow(alias, model._meta.app_label, model_name=model._meta.model_name, model=model)
            is not None
        ):
            return f"{type(deciding).__module__}.{type(deciding).__qualname__}"
    return "a router"


def _faked(executor: RecordingExecutor, progress: ProgressCallback) -> bool:
    """Whether migrator's migrations were recorded applied without its tables (``migrate
    --fake`` adopting a database): their records are then removed, so that bootstrap makes
    the tables. With some of its tables there but not all, it refuses (exit 2)."""
    connection = executor.connection
    tables = {model._meta.db_table for model in apps.get_app_config(MIGRATOR_APP).get_models()}
    with connection.cursor() as cursor:
        missing = tables - set(connection.introspection.table_names(cursor))
    if not missing:
        return False
    said = f"migrator's migrations are recorded as applied on {connection.alias!r}, but"
    if missing != tables:
        raise IntegrityViolation(
            f"{said} its tables {', '.join(sorted(missing))} are missing; drop its other "
            "tables and run 'python manage.py migrate migrator zero --fake', then run again."
        )
    progress(
        ProgressEvent(
            "warning", message=f"{said} its tables are missing (migrate --fake?): making them."
        )
    )
    executor.recorder.migration_qs.filter(app=MIGRATOR_APP).delete()
    planning.refresh_applied(executor.loader)
    return True


def _report_wait(progress: ProgressCallback):
    def on_wait(holder: locking.LockHolder | None) -> None:
        who = holder.describe() if holder else "another process"
        progress(
            ProgressEvent(
                "lock_wait",
                message=f"Waiting for the migration lock held by {who}.",
                data={"holder": holder.as_dict() if holder else None},
            )
        )

    return on_wait
