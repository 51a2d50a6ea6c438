"""Django's MigrationExecutor, with migrator's records written in each migration's transaction.

Django records an applied migration inside the migration's transaction only when the
schema editor has no deferred SQL, and records an unapplied one after the transaction has
committed. A kill between the two leaves the schema and ``django_migrations`` disagreeing.
Here both are recorded inside the transaction whenever the migration is atomic, together
with migrator's hash and run-step records, so that they commit or vanish together.
"""

import copy
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cache, partial
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import ProjectState
from django.utils import timezone

from migrator import compat, concurrently, integrity, operations, signals, timeouts
from migrator.conf import get_settings
from migrator.exceptions import MigrationFailed
from migrator.models import MigrationHash, Run, RunStep
from migrator.types import MIGRATOR_APP, MigrationKey, MigrationPlan, migration_label

DjangoProgress = Callable[..., None]
ROLLED_BACK = "It was rolled back"
STATEMENT_NOT_APPLIED = (
    "That statement had no effect; the earlier ones of this non-atomic migration stay applied"
)
INVALID_INDEX_LEFT = (
    "That statement left the INVALID index {index}, which every write keeps up to date until "
    "the next run drops it and builds it again; the earlier ones of this non-atomic migration "
    "stay applied"
)
DROP_LEFT_INVALID = (
    "That statement marked the index {index} INVALID (no query uses it) before its wait; it is "
    "idempotent, and running it again drops the index; the earlier ones of this non-atomic "
    "migration stay applied"
)

# Written once per migration inside its transaction, so plain SQL rather than the ORM's
# per-row machinery: it keeps safemigrate's overhead over migrate unmeasurable.
# ON CONFLICT ... excluded works on PostgreSQL and on SQLite 3.24+.
UPSERT_HASH = (
    "INSERT INTO {table} (app_label, name, checksum, applied_at, duration, fake, run_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (app_label, name) DO UPDATE SET "
    "checksum = excluded.checksum, applied_at = excluded.applied_at, "
    "duration = excluded.duration, fake = excluded.fake, run_id = excluded.run_id"
)
INSERT_STEP = (
    "INSERT INTO {table} (run_id, app_label, name, direction, fake, duration, finished_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)

CLAIM_HASHES = "UPDATE {table} SET run_id = %s WHERE app_label = %s AND name IN ({names})"


class RecordingExecutor(MigrationExecutor):
    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        progress_callback: DjangoProgress | None = None,
        *,
        run: Run | None = None,
        record_hashes: bool = True,
    ) -> None:
        super().__init__(connection, progress_callback)
        self.run = run
        self.record_hashes = record_hashes
        self.guarding = True  # off while the guard itself cleans up after a lock timeout
        self._started: dict[Migration, float] = {}
        self.pending_steps: list[list[Any]] = []  # INSERT_STEP rows
        self.hashed: set[MigrationKey] = set()  # migrations whose hash this executor recorded
        self.fake = False

    @contextmanager
    def bootstrapping(self, progress_callback: DjangoProgress) -> Iterator[None]:
        """Apply migrator's own migrations: no hash records yet, progress reported apart."""
        saved = self.progress_callback, self.record_hashes
        self.progress_callback, self.record_hashes = progress_callback, False
        try:
            yield
        finally:
            self.progress_callback, self.record_hashes = saved

    def detect_soft_applied(
        self, project_state: ProjectState | None, migration: Migration
    ) -> tuple[bool, ProjectState | None]:
        """Django's (``--fake-initial``), which trusts initial migrations only; migrator's
        own are trusted all: only they make its tables and columns, and a node of an older
        release that followed its advice (``safemigrate migrator --prune``) forgot newer
        ones whose columns stay.

        One with neither CreateModel nor AddField is not applied, and Django returns the
        state after it all the same: the migration would then run from there, a no-op.
        """
        if migration.app_label != MIGRATOR_APP or migration.initial:
            return super().detect_soft_applied(project_state, migration)
        as_initial = copy.copy(migration)
        as_initial.initial = True
        applied, after = super().detect_soft_applied(project_state, as_initial)
        return applied, after if applied else project_state

    def apply_migration(
        self,
        state: ProjectState,
        migration: Migration,
        fake: bool = False,
        fake_initial: bool = False,
    ) -> ProjectState:
        self._report("apply_start", migration, fake)
        if not fake and fake_initial:
            fake, state = self.detect_soft_applied(state, migration)
        self.fake = fake
        if fake:
            self.record_applied(migration)
        else:
            state = self._retrying(self._apply_once, migration, state, mutates_state=True)
        self._report("apply_success", migration, fake)
        return state

    def _apply_once(self, migration: Migration, state: ProjectState) -> ProjectState:
        with (
            self._bounded(migration, state),
            self._schema_editor(migration) as schema_editor,
        ):
            if timeouts.applies(self.connection, migration):
                timeouts.set_local_timeouts(self.connection)
            state = migration.apply(state, schema_editor)
            recorded = schema_editor.atomic_migration or not schema_editor.deferred_sql
            if recorded:
                self.record_applied(migration)
        if not recorded:
            self.record_applied(migration)
        return state

    def unapply_migration(
        self, state: ProjectState, migration: Migration, fake: bool = False
    ) -> ProjectState:
        self._report("unapply_start", migration, fake)
        self.fake = fake
        if fake:
            self.record_unapplied(migration)
        else:
            state = self._retrying(self._unapply_once, migration, state, mutates_state=False)
        self._report("unapply_success", migration, fake)
        return state

    def _unapply_once(self, migration: Migration, state: ProjectState) -> ProjectState:
        with (
            self._bounded(migration, state),
            self._schema_editor(migration) as schema_editor,
        ):
            if timeouts.applies(self.connection, migration):
                timeouts.set_local_timeouts(self.connection)
            state = migration.unapply(state, schema_editor)
            if schema_editor.atomic_migration:
                self.record_unapplied(migration)
        if not schema_editor.atomic_migration:
            self.record_unapplied(migration)
        return state

    @contextmanager
    def _schema_editor(self, migration: Migration) -> Iterator[Any]:
        """The connection's schema editor, raising the database's own error when one fails.

        SQLite's editor checks constraints before it leaves its atomic block; after an
        error that broke the block (an ORM save in a ``RunPython``), the check raises
        TransactionManagementError over the real error and the block is never left. Leave
        it as its exit would have (rollback, constraint checks back on), raise the real one.
        """
        editor = self.connection.schema_editor(atomic=migration.atomic)
        try:
            with editor:
                yield editor
        except transaction.TransactionManagementError as exc:
            original = exc.__context__
            if original is None or not (
                editor.atomic_migration and self.connection.in_atomic_block
            ):
                raise
            editor.atomic.__exit__(type(original), original, original.__traceback__)
            self.connection.enable_constraint_checking()
            raise original.with_traceback(original.__traceback__) from None

    def _retrying(
        self,
        attempt: Callable[[Migration, ProjectState], ProjectState],
        migration: Migration,
        state: ProjectState,
        *,
        mutates_state: bool,
    ) -> ProjectState:
        """Run an atomic PostgreSQL migration, retrying it with backoff on lock timeouts.

        Each failed attempt was rolled back whole, so a retry starts from the same state;
        after ``MIGRATOR["LOCK_RETRIES"]`` retries, MigrationFailed (exit 5) names the
        sessions holding locks on the migration's tables.
        """
        if not timeouts.applies(self.connection, migration):
            return attempt(migration, state)
        retries = get_settings().lock_retries
        for number in itertools.count(1):
            retry_possible = mutates_state and number <= retries  # the last try needs no copy
            before = timeouts.unrendered_copy(state) if retry_possible else state
            try:
                return attempt(migration, state)
            except DatabaseError as exc:
                if not timeouts.is_lock_timeout(exc):
                    raise
                tables = timeouts.migration_tables(migration, before, self.connection)
                blockers = self._blockers(tables)
                self._wait_to_retry(migration, number, blockers, ROLLED_BACK, "rolled back")
                state = before
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _bounded(self, migration: Migration, state: ProjectState) -> Iterator[None]:
        """Every statement of a PostgreSQL migration under the timeouts (``timeouts``).

        Atomic migrations set them locally (in ``_apply_once``) and are retried whole; a
        non-atomic one gets them for the session, and each of its statements stopped by
        ``lock_timeout`` outside a transaction (so without effect) is retried alone.
        """
        if self.connection.vendor != "postgresql":
            yield
            return
        guard = partial(self._guard_statement, migration, state)
        session = nullcontext() if migration.atomic else timeouts.session_timeouts(self.connection)
        with session, self.connection.execute_wrapper(guard):
            yield

    def _guard_statement(
        self, migration: Migration, state: ProjectState, execute, sql, params, many, context
    ):
        """An ``execute_wrapper``: weak-lock scans unbounded, lock timeouts retried alone."""
        if not self.guarding:
            return execute(sql, params, many, context)
        long_scan = concurrently.is_long_under_weak_lock(sql)
        index = concurrently.build_index_name(sql)
        dropped = concurrently.drop_index_name(sql)
        for number in itertools.count(1):
            started = time.monotonic()
            try:
                with (
                    timeouts.statement_timeout_lifted(self.connection)
                    if long_scan
                    else nullcontext()
                ):
                    return execute(sql, params, many, context)
            except DatabaseError as exc:
                if self.connection.in_atomic_block or not timeouts.is_lock_timeout(exc):
                    raise
                timeouts.set_session_timeouts(self.connection)  # whatever the SQL set since
                tables = timeouts.migration_tables(migration, state, self.connection)
                build_started = None if index is None else started
                blockers = self._blockers(tables, build_started=build_started)
                if index is not None and not self._dropped_invalid(index):
                    left = INVALID_INDEX_LEFT.format(index=self.connection.ops.quote_name(index))
                    raise self._timed_out(migration, number, blockers, left) from exc
                self._wait_to_retry(migration, number, blockers, *self._stopped_outcome(dropped))
        raise AssertionError("unreachable")  # pragma: no cover

    def _stopped_outcome(self, dropped: str | None) -> tuple[str, str]:
        """What a statement stopped by lock_timeout outside a transaction did, as the error
        and the retry event say it: nothing, unless it was a ``DROP INDEX CONCURRENTLY`` of
        ``dropped`` that marked the index INVALID before its wait."""
        if dropped is None or not concurrently.is_invalid_index(self.connection, dropped):
            return STATEMENT_NOT_APPLIED, "that statement had no effect"
        index = self.connection.ops.quote_name(dropped)
        return DROP_LEFT_INVALID.format(index=index), f"that statement left {index} INVALID"

    def _dropped_invalid(self, index: str) -> bool:
        """Drop the INVALID index a concurrent build stopped by lock_timeout left, in one
        try (not retried: its own wait is for the same sessions); False if that timed out."""
        self.guarding = False
        try:
            concurrently.drop_invalid_index(self.connection, index)
        except DatabaseError as exc:
            if not timeouts.is_lock_timeout(exc):
                raise
            return False
        finally:
            self.guarding = True
        return True

    def _blockers(
        self, tables: list[str], *, build_started: float | None = None
    ) -> list[timeouts.BlockingSession]:
        """Who held the locks on ``tables``; for a concurrent build (started at
        ``build_started``, monotonic) also every older snapshot of the database, each of
        which it waits for."""
        exclude = timeouts.backend_pid(self.connection)
        blockers = timeouts.blocking_sessions(self.connection, tables, exclude_pid=exclude)
        if build_started is not None:
            blockers += timeouts.older_snapshots(
                self.connection, since=build_started, exclude_pid=exclude
            )
        return blockers

    def _wait_to_retry(
        self,
        migration: Migration,
        number: int,
        blockers: list[timeouts.BlockingSession],
        outcome: str,
        what: str,
    ) -> None:
        """After lock timeout number ``number``: report ``what`` happened, back off; past
        the retries, fail saying ``outcome``."""
        retries = get_settings().lock_retries
        if number > retries:
            raise self._timed_out(migration, number, blockers, outcome)
        wait = timeouts.backoff(number)
        self._report_retry(migration, number, retries, wait, blockers, what)
        time.sleep(wait)

    def _timed_out(
        self,
        migration: Migration,
        attempts: int,
        blockers: list[timeouts.BlockingSession],
        outcome: str,
    ) -> MigrationFailed:
        who = timeouts.describe_blockers(blockers)
        return MigrationFailed(
            f"Migration {migration_label(migration)} could not get its locks within "
            f"lock_timeout {get_settings().pg_lock_timeout:g}s in {attempts} attempt(s); "
            f"blocked by {who}. {outcome}: end or wait for that session, then run again."
        )

    def _report_retry(
        self,
        migration: Migration,
        number: int,
        retries: int,
        wait: float,
        blockers: list[timeouts.BlockingSession],
        what: str,
    ) -> None:
        if not self.progress_callback:
            return
        who = timeouts.describe_blockers(blockers)
        self.progress_callback(
            "retry",
            migration,
            self.fake,
            message=(
                f"Lock timeout, {what}; blocked by {who}. Retry {number} of {retries} in {wait:g}s."
            ),
            data={
                "attempt": number,
                "retries": retries,
                "wait": wait,
                "blockers": [blocker.as_dict() for blocker in blockers],
            },
        )

    def record_applied(self, migration: Migration) -> None:
        """Record an apply; its run step waits for ``save_steps()`` (see below)."""
        compat.record_applied(self, migration)
        duration = self._duration(migration)
        if self.record_hashes:
            self.record_hash(migration, duration, fake=self.fake)
        operations.forget_progress(self.connection, migration)  # a re-apply starts afresh
        if self.run is not None:
            self.pending_steps.append(self._step_row(migration, RunStep.Direction.APPLY, duration))

    def record_hash(
        self, migration: Migration, duration: float | None = None, *, fake: bool = False
    ) -> None:
        """Upsert the hash record of an applied migration, naming this executor's run."""
        self.hashed.add((migration.app_label, migration.name))
        self._execute(
            UPSERT_HASH.format(table=MigrationHash._meta.db_table),
            [
                migration.app_label,
                migration.name,
                integrity.migration_hash(migration),
                self.connection.ops.adapt_datetimefield_value(timezone.now()),
                duration,
                fake,
                self.run.pk if self.run is not None else None,
            ],
        )

    def save_steps(self) -> None:
        """Write the run's apply steps in one transaction, once the run stops applying.

        The hash record written in each migration's transaction already names the run and
        the duration, so a run killed before this point loses nothing:
        ``audit.mark_abandoned_runs`` rebuilds its steps from those records. Writing one
        row fewer per migration keeps each migration's commit as small as ``migrate``'s.
        """
        if self.pending_steps:
            with (
                transaction.atomic(using=self.connection.alias),
                self._unlogged_cursor() as cursor,
            ):
                cursor.executemany(
                    INSERT_STEP.format(table=RunStep._meta.db_table), self.pending_steps
                )
            self.pending_steps = []

    def claim_bootstrapped(self, plan: MigrationPlan) -> None:
        """Make migrator's own migrations that ``lifecycle.bootstrap`` applied under this
        run's lock, before its record could be opened (their tables hold it), the run's
        first steps: their hash records name the run (a killed run's steps are rebuilt
        from them), and their steps are written with the others."""
        if not plan:
            return
        names = [migration.name for migration, _ in plan]
        hashes = MigrationHash.objects.using(self.connection.alias).filter(
            app_label=MIGRATOR_APP, name__in=names
        )
        recorded = {record.name: record for record in hashes}
        self._execute(
            CLAIM_HASHES.format(
                table=MigrationHash._meta.db_table, names=", ".join(["%s"] * len(names))
            ),
            [self.run.pk, MIGRATOR_APP, *names],
        )
        adapt = self.connection.ops.adapt_datetimefield_value
        self.pending_steps[:0] = [
            [
                self.run.pk,
                MIGRATOR_APP,
                name,
                RunStep.Direction.APPLY,
                bool(recorded[name].fake),
                recorded[name].duration,
                adapt(recorded[name].applied_at),
            ]
            for name in names
        ]

    def check_replacements(self) -> None:
        """Mark squashes applied as Django does, and record their hashes (integrity.verify).

        A squash this executor applied has its hash already, with its time and duration
        (a killed run's steps are rebuilt from them): it is not recorded again.
        """
        if not self.loader.replacements:
            return
        applied = self.recorder.applied_migrations()
        marked = [
            squash
            for key, squash in self.loader.replacements.items()
            if key not in applied and compat.all_replaced_applied(self.loader, key, applied)
        ]
        super().check_replacements()
        if self.record_hashes:
            for squash in marked:
                if (squash.app_label, squash.name) not in self.hashed:
                    self.record_hash(squash)

    def record_unapplied(self, migration: Migration) -> None:
        """Unapply a migration in ``django_migrations`` and in migrator's records."""
        compat.record_unapplied(self, migration)
        if self.record_hashes:
            keys = [*migration.replaces, (migration.app_label, migration.name)]
            self.hashed.difference_update(keys)
            for app_label, name in keys:
                MigrationHash.objects.using(self.connection.alias).filter(
                    app_label=app_label, name=name
                ).delete()
        operations.forget_progress(self.connection, migration)  # a re-apply starts afresh
        self._record_step(migration, RunStep.Direction.UNAPPLY)

    def _record_stopping_point(self, migration: Migration | None) -> None:
        """Name the non-atomic migration the run is in (None: out of it) on its record.

        A kill -9 in such a migration leaves what it did, not recorded as applied (or
        unapplied); ``audit.mark_abandoned_runs`` says where it stopped. Atomic ones need
        no write: a kill rolls them back whole.
        """
        self.run.failed_migration = migration_label(migration) if migration else ""
        Run.objects.using(self.connection.alias).filter(pk=self.run.pk).update(
            failed_migration=self.run.failed_migration
        )

    def _duration(self, migration: Migration) -> float | None:
        started = self._started.get(migration)
        return None if started is None else time.monotonic() - started

    def _record_step(self, migration: Migration, direction: str) -> None:
        if self.run is not None:
            self._execute(
                INSERT_STEP.format(table=RunStep._meta.db_table),
                self._step_row(migration, direction, self._duration(migration)),
            )

    def _step_row(self, migration: Migration, direction: str, duration: float | None) -> list[Any]:
        """The parameters of INSERT_STEP for a migration this run applied or unapplied."""
        return [
            self.run.pk,
            migration.app_label,
            migration.name,
            direction,
            self.fake,
            duration,
            self.connection.ops.adapt_datetimefield_value(timezone.now()),
        ]

    def _execute(self, sql: str, params: list[Any]) -> None:
        """Run one of migrator's own record statements, out of DEBUG's query log.

        On the driver's own cursor, in its placeholder style: Django's SQLite cursor finds
        the placeholders of each statement it runs with a regular expression, which made
        up a measurable part of safemigrate's overhead (one hash record per migration).
        """
        self.connection.ensure_connection()
        with self.connection.wrap_database_errors:
            cursor = self.connection.connection.cursor()
            try:
                cursor.execute(_in_driver_style(sql, self.connection.Database.paramstyle), params)
            finally:
                cursor.close()

    def _unlogged_cursor(self) -> CursorWrapper:
        """A cursor for migrator's own records that stays out of DEBUG's query log.

        With DEBUG on, ``connection.cursor()`` logs each statement and, on SQLite, quotes
        its parameters with one more query: for the hash record written per migration that
        was most of what DEBUG added to safemigrate over migrate (benchmarks/overhead.py).
        Errors are still wrapped as Django's DatabaseError subclasses.
        """
        self.connection.ensure_connection()
        with self.connection.wrap_database_errors:
            return self.connection.make_cursor(self.connection.create_cursor())

    def _report(self, action: str, migration: Migration, fake: bool, **extra: Any) -> None:
        if action.endswith("_start"):
            self._started[migration] = time.monotonic()
        if not migration.atomic and not fake and self.run is not None:
            self._record_stopping_point(migration if action.endswith("_start") else None)
        if self.progress_callback:
            self.progress_callback(action, migration, fake)
        if action in {"apply_success", "unapply_success"} and self.run is not None:
            started = self._started.get(migration)  # the migration has committed: tell
            signals.run_event(
                "applied" if action == "apply_success" else "unapplied",
                self.run,
                migration=migration_label(migration),
                fake=fake,
                duration=None if started is None else time.monotonic() - started,
            )


@cache
def _in_driver_style(sql: str, paramstyle: str) -> str:
    """A statement written with ``%s`` placeholders, in a DB-API driver's ``paramstyle``."""
    return sql.replace("%s", "?") if paramstyle == "qmark" else sql
