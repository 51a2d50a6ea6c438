"""The run audit: who ran what, where, when, and how it ended.

A run's record is opened and closed in one place, ``recorded``: the flows' runs (under the
run lock, see ``lifecycle.locked``) and the refusals of runs that never began alike.
"""

import importlib
import logging
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Max
from django.utils import timezone

from migrator import locking, secrets, signals
from migrator.conf import get_settings
from migrator.exceptions import (
    ConfirmationRequired,
    LockFileUnusable,
    LockNotAcquired,
    RunInterrupted,
)
from migrator.models import BatchProgress, MigrationHash, Run, RunStep
from migrator.types import (
    MigrationKey,
    ProgressCallback,
    ProgressEvent,
    ignore_progress,
)

logger = logging.getLogger(__name__)

CI_REVISION_VARIABLES = ("MIGRATOR_REVISION", "GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT")
# Commands that run under the lock.
LOCKED_COMMANDS = ("safemigrate", "rollback", "restore", "verifymigrations")
# migrator's migration that marks the hash records which cannot say whether their apply
# was faked (NULL): its rule also serves tables still without it, and portable restores.
FAKE_UNKNOWN: Final = "0005_migrationhash_fake_unknown"
fake_unknown = importlib.import_module(f"migrator.migrations.{FAKE_UNKNOWN}")


def actor() -> str:
    """Who is running: ``MIGRATOR_ACTOR`` (set by CI or a deploy tool), else the OS user;
    cut to its column, as a long CI description would be."""
    return _fitted("actor", os.environ.get("MIGRATOR_ACTOR") or locking.os_user())


def git_revision() -> str:
    """The deployed revision from CI variables, else from git in the project's directory
    (``BASE_DIR``; the working directory without one): a command run from elsewhere must
    not record another repository's commit."""
    for variable in CI_REVISION_VARIABLES:
        if os.environ.get(variable):
            return _fitted("git_revision", os.environ[variable])
    return _fitted("git_revision", _git_head(_project_dir())[0])


def revision_warning() -> str | None:
    """Why the audit records no revision although the project is a git checkout (git
    refused it), with how to fix it; None when there is nothing to say. Logged too."""
    if any(os.environ.get(variable) for variable in CI_REVISION_VARIABLES):
        return None
    warning = _git_head(_project_dir())[1]
    if warning:
        logger.warning("%s", warning)
    return warning


def _project_dir() -> str | None:
    base = getattr(settings, "BASE_DIR", None)
    return os.fspath(base) if base and os.path.isdir(base) else None


def _git_head(directory: str | None) -> tuple[str, str | None]:
    """``git rev-parse HEAD`` in ``directory``: (the revision or "", why not).

    Not a checkout, or no git: no revision, nothing to say. A checkout another user owns
    (code installed by root, run as the app's uid) is refused by git ("dubious
    ownership"); migrator does not override that check (``-c safe.directory``): it guards
    against running what another user's repository configures. It says so instead.
    """
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "", None
    if done.returncode == 0:
        return done.stdout.strip(), None
    if "safe.directory" not in done.stderr:
        return "", None
    where = directory or os.getcwd()
    warning = (
        f"git refuses to read the revision of {where} (another user owns it), so runs record "
        "none: set MIGRATOR_REVISION to the deployed revision, or run "
        f"'git config --global --add safe.directory {where}' as this user."
    )
    return "", warning


def _fitted(field: str, value: str) -> str:
    """``value`` cut to its column in the run record (PostgreSQL refuses a longer one)."""
    return value[: Run._meta.get_field(field).max_length]


@contextmanager
def recorded(
    connection: BaseDatabaseWrapper,
    *,
    command: str,
    arguments: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
    refusal: str | None = None,
) -> Iterator[Run]:
    """The run's record, opened here and closed once when the block ends.

    A failure inside closes it ``failed`` (``interrupted`` for Ctrl-C and SIGTERM,
    ``refused`` for a refusal) with the error masked; the block may set ``run.error``,
    ``run.failed_migration`` and ``run.details`` first to say more than the exception.
    ``refusal``: the error of a run refused before it began, recorded ``refused``.
    """
    refused = refusal is not None
    opening = timezone.now()
    try:
        run = _open_run(
            connection,
            command=command,
            arguments=arguments,
            outcome=Run.Outcome.REFUSED if refused else Run.Outcome.RUNNING,
            details=details,
        )
    except (KeyboardInterrupt, RunInterrupted) as exc:
        _close_half_opened(connection, since=opening, exc=exc)
        raise
    try:
        if not refused:  # a refusal is reported as it is closed, with why
            signals.run_event("started", run)
        yield run
    except BaseException as exc:
        error = run.error or str(exc) or type(exc).__name__
        _close_run(run, outcome=outcome_of(exc), error=error, failed_migration=run.failed_migration)
        raise
    if refused:
        _close_run(run, outcome=Run.Outcome.REFUSED, error=refusal)
    else:
        _close_run(run, outcome=Run.Outcome.SUCCEEDED)


def outcome_of(exc: BaseException) -> str:
    """The outcome a run that raised ``exc`` is recorded with."""
    if isinstance(exc, KeyboardInterrupt | RunInterrupted):
        return Run.Outcome.INTERRUPTED
    if isinstance(exc, ConfirmationRequired) or getattr(exc, "refused", False):
        return Run.Outcome.REFUSED
    return Run.Outcome.FAILED


def _open_run(
    connection: BaseDatabaseWrapper,
    *,
    command: str,
    arguments: Mapping[str, Any],
    outcome: str = Run.Outcome.RUNNING,
    details: Mapping[str, Any] | None = None,
) -> Run:
    """Create and commit the record of a run, before it changes anything."""
    return Run.objects.using(connection.alias).create(
        command=command,
        arguments=secrets.mask(dict(arguments)),
        database=connection.alias,
        environment=get_settings().environment,
        actor=actor(),
        host=socket.gethostname(),
        pid=os.getpid(),
        git_revision=git_revision(),
        outcome=outcome,
        details=secrets.mask(dict(details or {})),
    )


def _close_half_opened(
    connection: BaseDatabaseWrapper, *, since: datetime, exc: BaseException
) -> None:
    """Ctrl-C or SIGTERM as a run's record was made: its INSERT may have committed (with
    psycopg2 a signal's handler runs once the statement returns). Close it, so it is not
    left running. psycopg 3 runs the handler while it waits for the INSERT: that one is
    cancelled, and the connection, cut mid-statement, opened again."""
    if connection.vendor == "postgresql" and connection.connection is not None:
        with suppress(Exception):  # nothing to cancel once the statement returned
            connection.connection.cancel()
        connection.close()
    with suppress(DatabaseError):
        for run in Run.objects.using(connection.alias).filter(
            pid=os.getpid(),
            host=socket.gethostname(),
            outcome=Run.Outcome.RUNNING,
            started_at__gte=since,
        ):
            _close_run(run, outcome=outcome_of(exc), error=str(exc) or type(exc).__name__)


def _close_run(
    run: Run,
    *,
    outcome: str,
    error: str = "",
    failed_migration: str = "",
    **details: Any,
) -> None:
    """Record how a run ended; never masks the run's own error if the audit write fails.

    A run is reported closed once: a second call (a fuller error message) only updates it.
    """
    reported_already = run.finished_at is not None
    run.outcome = outcome
    run.error = secrets.mask(error)
    run.failed_migration = failed_migration
    run.finished_at = run.finished_at or timezone.now()
    run.details = {**run.details, **secrets.mask(details)}
    # If the database went away mid-run, the next run marks this one interrupted.
    with suppress(DatabaseError), transaction.atomic(using=run._state.db):
        run.save(
            update_fields=[
                "outcome",
                "error",
                "failed_migration",
                "finished_at",
                "details",
                "backup_id",
            ]
        )
        if outcome != Run.Outcome.SUCCEEDED:  # it may have stopped before writing its steps
            _restore_apply_steps(connections[run._state.db], run)
    if not reported_already:
        signals.run_closed(run)


def mark_abandoned_runs(
    connection: BaseDatabaseWrapper, progress: ProgressCallback = ignore_progress
) -> int:
    """Runs still 'running' while we hold the lock were killed: record them as interrupted.

    Each is reported (``interrupted_found``): the run that finds it is where someone looks.
    """
    abandoned = list(
        Run.objects.using(connection.alias).filter(
            command__in=LOCKED_COMMANDS, outcome=Run.Outcome.RUNNING
        )
    )
    for run in abandoned:
        _restore_apply_steps(connection, run)
        run.outcome = Run.Outcome.INTERRUPTED
        run.finished_at = _last_activity(run)
        part_way = f" It {stopped_part_way(run)}" if run.failed_migration else ""
        run.error = f"The process ended without finishing the run (killed or lost).{part_way}"
        run.save(update_fields=["outcome", "finished_at", "error"])
        signals.run_closed(run)  # a killed process could not say so itself
        progress(
            ProgressEvent(
                "interrupted_found",
                message=f"{run.command} run #{run.pk} (pid {run.pid}) ended without finishing "
                f"(killed or lost); recorded as interrupted.{part_way}",
            )
        )
    return len(abandoned)


def _last_activity(run: Run) -> datetime:
    """When a run whose process died was last known to act: its last step or hash record,
    or the last batch committed in the migration it stopped in, else its start; not when
    someone found it (which could be the next morning)."""
    known = [
        run.steps.aggregate(last=Max("finished_at"))["last"],
        run.hashes.aggregate(last=Max("applied_at"))["last"],
        _last_batch(run),
    ]
    return max([run.started_at, *(moment for moment in known if moment is not None)])


def _last_batch(run: Run) -> datetime | None:
    """When the last batch of the non-atomic migration ``run`` stopped in committed.

    Batch progress names no run, only its migration: the executor names the non-atomic
    migration a run is in on its record, and from its start the run held the lock, so
    that migration's progress written since was its own (both stamped by its process).
    """
    if not run.failed_migration:
        return None
    app_label, _, name = run.failed_migration.partition(".")
    batches = BatchProgress.objects.using(run._state.db).filter(
        app_label=app_label, migration=name, updated_at__gte=run.started_at
    )
    return batches.aggregate(last=Max("updated_at"))["last"]


def stopped_part_way(run: Run) -> str:
    """Where a run stopped in a non-atomic migration (the executor names it on the record
    while it runs, ``run.failed_migration``), and what to do about it."""
    recorded = "unapplied" if run.command == "rollback" else "applied"
    return (
        f"stopped in {run.failed_migration}, which is not atomic: what it did stays, not "
        f"recorded as {recorded}; run {run.command} again to finish it, or undo it by hand."
    )


def mark_dead_runs(connection: BaseDatabaseWrapper) -> int:
    """Runs left 'running' by a process that died, marked interrupted by whoever looks.

    A run is recorded only while its process holds the run lock, so a 'running' run whose
    lock can be taken at once is dead (killed, or its host's session is gone). Nothing is
    touched while a live run holds the lock.
    """
    running = Run.objects.using(connection.alias).filter(
        command__in=LOCKED_COMMANDS, outcome=Run.Outcome.RUNNING
    )
    if not running.exists():
        return 0
    try:
        with locking.migration_lock(connection, timeout=0):
            return mark_abandoned_runs(connection)
    except (LockNotAcquired, LockFileUnusable):  # a live run; a reader of another's file
        return 0


def _restore_apply_steps(connection: BaseDatabaseWrapper, run: Run) -> None:
    """A killed run never wrote its apply steps, nor one whose database refused them (a
    SQLite file write-locked meanwhile): rebuild them from its hash records.

    A ``--fake`` run only recorded every one, whatever its hash records say: a migrator
    older than its migration 0004 wrote no ``fake`` in them, and rebuilt the steps of
    such a run as real applies.
    """
    if run.steps.filter(direction=RunStep.Direction.APPLY).exists():
        return
    faked = bool(run.arguments.get("fake"))
    RunStep.objects.using(connection.alias).bulk_create(
        RunStep(
            run=run,
            app_label=record.app_label,
            name=record.name,
            direction=RunStep.Direction.APPLY,
            fake=faked or bool(record.fake),
            duration=record.duration,
            finished_at=record.applied_at,
        )
        for record in hash_records(connection, run=run)
    )


@dataclass(frozen=True)
class HashRecord:
    """A hash record as far as migrator's applied migrations have its columns."""

    app_label: str
    name: str
    applied_at: datetime
    duration: float | None  # None: not measured, or no such column (before migrator.0002)
    fake: bool | None


def hash_records(connection: BaseDatabaseWrapper, **filters: Any) -> list[HashRecord]:
    """The hash records matching ``filters``, oldest first, read from the columns their
    table has: a command that only looks (``migrationstatus``, ``rollback --plan``) finds
    a killed run before any of migrator's own migrations are applied, and applies none.

    ``fake`` is None where no record says whether the apply was faked: written by a
    migrator older than its migration 0004, which 0004 filled in with False. Before
    migrator.0005 marks those NULL, the same rule as 0005's tells them apart.
    """
    table = MigrationHash._meta.db_table
    with connection.cursor() as cursor:
        nullable = {
            column.name: column.null_ok
            for column in connection.introspection.get_table_description(cursor, table)
        }
    fields = ["id", "app_label", "name", "applied_at"]
    fields += [name for name in ("duration", "fake") if name in nullable]
    rows = list(
        MigrationHash.objects.using(connection.alias)
        .filter(**filters)
        .order_by("applied_at", "id")
        .values(*fields)
    )
    if "fake" in nullable and not nullable["fake"]:  # 0004 without 0005
        hashes = MigrationHash.objects.using(connection.alias)
        unknown = set(fake_unknown.unknown_fakes(hashes).values_list("id", flat=True))
        for row in rows:
            if row["id"] in unknown:
                row["fake"] = None
    return [
        HashRecord(
            row["app_label"],
            row["name"],
            row["applied_at"],
            row.get("duration"),
            row.get("fake"),
        )
        for row in rows
    ]


def unrecorded_fakes(connection: BaseDatabaseWrapper, keys: set[MigrationKey]) -> set[MigrationKey]:
    """The applied migrations among ``keys`` whose hash record cannot say whether their
    apply was faked (``hash_records``), or is missing."""
    records = hash_records(
        connection,
        app_label__in={app_label for app_label, _ in keys},
        name__in={name for _, name in keys},
    )
    return keys - {(r.app_label, r.name) for r in records if r.fake is not None}
