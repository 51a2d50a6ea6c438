"""Migration operations for users: data migrations in batches that survive a kill.

The safe forms of blocking PostgreSQL schema changes (``AddIndexSafely`` and the others,
``migrator.safe_operations``) are importable from here too.

A ``RunPython`` that rewrites twenty million rows holds one transaction for an hour and
starts from zero after a crash. ``RunPythonInBatches`` walks the rows in primary-key order
(keyset pagination), commits each batch in its own transaction together with its progress
in migrator's ``BatchProgress`` table, and so resumes after the last committed batch::

    from django.db import migrations
    from django.db.models import F

    from migrator.operations import RunPythonInBatches

    def backfill_total(apps, schema_editor, batch):
        batch.update(total=F("price") * F("quantity"))

    class Migration(migrations.Migration):
        atomic = False  # each batch commits on its own
        dependencies = [("shop", "0007_order_total"), ("migrator", "0001_initial")]
        operations = [RunPythonInBatches("Order", backfill_total, batch_size=2000)]

``batch`` is an unevaluated queryset of the historical model: the rows whose primary key
lies after the previous batch's last key and up to this batch's last key, in key order.
"""

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DatabaseError, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.operations.base import Operation
from django.db.models import Model, QuerySet
from django.utils import timezone

from migrator import tablesize
from migrator.conf import get_settings
from migrator.models import BatchProgress
from migrator.safe_operations import (
    AddCheckSafely,
    AddForeignKeySafely,
    AddIndexSafely,
    AddUniqueSafely,
    SetNotNullSafely,
)
from migrator.types import ProgressCallback, ProgressEvent

__all__ = [
    "AddCheckSafely",
    "AddForeignKeySafely",
    "AddIndexSafely",
    "AddUniqueSafely",
    "RunPythonInBatches",
    "SetNotNullSafely",
]

logger = logging.getLogger(__name__)

BatchFunction = Callable[[Any, Any, QuerySet], None]  # (apps, schema_editor, batch)
APPLY, UNAPPLY = "apply", "unapply"
EXACT_ESTIMATE_LIMIT = 1_000_000  # tables up to this size are counted for the progress total

# Set by the runner around execution; an operation cannot see the runner's callback.
_progress_hook: ContextVar[ProgressCallback | None] = ContextVar(
    "migrator_batch_progress", default=None
)


@contextmanager
def reporting_progress(progress: ProgressCallback) -> Iterator[None]:
    """Send the ``batch_progress`` events of batched operations run inside to ``progress``."""
    token = _progress_hook.set(progress)
    try:
        yield
    finally:
        _progress_hook.reset(token)


class RunPythonInBatches(Operation):
    """Call ``function(apps, schema_editor, batch)`` for each batch of a model's rows.

    Irreversible without ``reverse_function`` (``rollback`` refuses it, exit 7).
    ``batch_size`` defaults to ``MIGRATOR["BATCH_SIZE"]``; ``pause`` seconds are slept
    between batches to throttle the load on a busy database.
    """

    reduces_to_sql = False

    def __init__(
        self,
        model_name: str,
        function: BatchFunction,
        reverse_function: BatchFunction | None = None,
        *,
        batch_size: int | None = None,
        pause: float = 0.0,
        elidable: bool = False,
        hints: dict[str, Any] | None = None,
    ) -> None:
        if not callable(function) or not (reverse_function is None or callable(reverse_function)):
            raise ValueError("RunPythonInBatches must be supplied with callables.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}.")
        if pause < 0:
            raise ValueError(f"pause must not be negative, not {pause!r}.")
        self.model_name = model_name
        self.function = function
        self.reverse_function = reverse_function
        self.batch_size = batch_size
        self.pause = pause
        self.elidable = elidable
        self.hints = hints or {}

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"model_name": self.model_name, "function": self.function}
        if self.reverse_function is not None:
            kwargs["reverse_function"] = self.reverse_function
        if self.batch_size is not None:
            kwargs["batch_size"] = self.batch_size
        if self.pause:
            kwargs["pause"] = self.pause
        if self.elidable:
            kwargs["elidable"] = self.elidable
        if self.hints:
            kwargs["hints"] = self.hints
        return (self.__class__.__qualname__, [], kwargs)

    @property
    def reversible(self) -> bool:  # type: ignore[override]
        return self.reverse_function is not None

    def state_forwards(self, app_label: str, state: Any) -> None:
        """No schema effect, like RunPython."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        from_state.clear_delayed_apps_cache()
        self._run(app_label, schema_editor, from_state.apps, self.function, APPLY)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if self.reverse_function is None:
            raise NotImplementedError("You cannot reverse this operation")
        self._run(app_label, schema_editor, from_state.apps, self.reverse_function, UNAPPLY)

    def describe(self) -> str:
        size = self.batch_size or "MIGRATOR['BATCH_SIZE']"
        return f"Raw Python operation on {self.model_name} in batches of {size}"

    @property
    def migration_name_fragment(self) -> str:
        return f"batch_{self.model_name.lower().replace('.', '_')}"

    def _run(self, app_label, schema_editor, apps, function: BatchFunction, direction: str):
        connection = schema_editor.connection
        model = _model(apps, app_label, self.model_name)
        if not router.allow_migrate(
            connection.alias, app_label, model_name=model._meta.model_name, **self.hints
        ):
            return
        if connection.in_atomic_block:
            logger.warning(
                "%s runs inside the migration's transaction: it cannot resume after a kill. "
                "Set atomic = False on the migration.",
                self.describe(),
            )
        _Batches(self, connection, schema_editor, apps, model, function, app_label, direction).run()


class _Batches:
    """One pass of a batched operation over its model, in one direction."""

    def __init__(self, operation, connection, schema_editor, apps, model, function, app, direction):
        self.operation, self.connection, self.schema_editor = operation, connection, schema_editor
        self.apps, self.model, self.function, self.direction = apps, model, function, direction
        self.batch_size = operation.batch_size or get_settings().batch_size
        location = _locate(operation)
        self.label = f"{app}.{location[0]}" if location else app
        self.persisted = location is not None and _has_progress_table(connection)
        if not self.persisted:
            logger.warning(
                "Progress of %s in %s is not stored (migrator's tables are missing or the "
                "operation is not in a migration module): a kill restarts it from the start.",
                operation.describe(),
                self.label,
            )
        self.key = (
            {"app_label": app, "migration": location[0], "operation_index": location[1]}
            if location
            else {}
        )

    def run(self) -> None:
        progress = self._load()
        if progress.finished:
            logger.info("%s in %s already finished; skipping.", self._what(), self.label)
            return
        if progress.rows_done:
            logger.info(
                "Resuming %s in %s after pk %r (%d rows done).",
                self._what(),
                self.label,
                progress.last_pk,
                progress.rows_done,
            )
        progress.rows_estimated = max(estimate_rows(self.connection, self.model), 0)
        started, resumed_at = time.monotonic(), progress.rows_done
        self._report(progress, started, resumed_at)
        while not progress.finished:
            self._batch(progress)
            self._report(progress, started, resumed_at)
            if self.operation.pause and not progress.finished:
                time.sleep(self.operation.pause)
        logger.info("%s in %s finished: %d rows.", self._what(), self.label, progress.rows_done)

    def _batch(self, progress: BatchProgress) -> None:
        """One batch and its progress, committed together: a kill loses neither alone."""
        alias = self.connection.alias
        rows = self.model._base_manager.db_manager(alias).order_by("pk")
        with transaction.atomic(using=alias):
            pending = rows if progress.last_pk is None else rows.filter(pk__gt=progress.last_pk)
            pks = list(pending.values_list("pk", flat=True)[: self.batch_size])
            if pks:
                batch = rows.filter(pk__lte=pks[-1])
                if progress.last_pk is not None:
                    batch = batch.filter(pk__gt=progress.last_pk)
                self.function(self.apps, self.schema_editor, batch)
                progress.last_pk = _json_pk(pks[-1])
                progress.rows_done += len(pks)
            progress.finished = len(pks) < self.batch_size
            progress.updated_at = timezone.now()
            if self.persisted:
                progress.save(using=alias)
                if progress.finished:  # the other direction starts afresh next time
                    self._rows().exclude(direction=self.direction).delete()

    def _load(self) -> BatchProgress:
        if self.persisted:
            found = self._rows().filter(direction=self.direction).first()
            if found is not None:
                return found
        return BatchProgress(**self.key, direction=self.direction)

    def _rows(self) -> QuerySet:
        return BatchProgress.objects.using(self.connection.alias).filter(**self.key)

    def _what(self) -> str:
        return f"{'Undoing ' if self.direction == UNAPPLY else ''}{self.operation.describe()}"

    def _report(self, progress: BatchProgress, started: float, resumed_at: int) -> None:
        hook = _progress_hook.get()
        if hook is None:
            return
        elapsed = time.monotonic() - started
        done_here = progress.rows_done - resumed_at
        rate = done_here / elapsed if elapsed > 0 and done_here else None
        total = max(progress.rows_estimated or 0, progress.rows_done)
        if progress.finished:
            total = progress.rows_done
        eta = (total - progress.rows_done) / rate if rate else None
        data = {
            "rows_done": progress.rows_done,
            "rows_total_estimate": total,
            "rate": rate,
            "eta": eta,
            "finished": progress.finished,
            "resumed_from": resumed_at,
            "direction": self.direction,
            "model": self.model._meta.label,
            "operation_index": self.key.get("operation_index"),
        }
        hook(ProgressEvent("batch_progress", migration=self.label, data=data))


def _model(apps: Any, app_label: str, model_name: str) -> type[Model]:
    if "." in model_name:
        app_label, model_name = model_name.split(".", 1)
    return apps.get_model(app_label, model_name)


def _json_pk(pk: Any) -> Any:
    """A primary key as JSON stores it (UUIDs and the like as text, which filters accept)."""
    return pk if isinstance(pk, int | str) else str(pk)


def _locate(operation: Operation) -> tuple[str, int] | None:
    """(migration name, index) of the migration module that holds this very operation.

    Django builds each Migration with the operation objects of its module's class, so
    identity finds it whether migrator's runner or plain ``migrate`` runs it.
    """
    for module_name, module in list(sys.modules.items()):
        migration_class = getattr(module, "__dict__", {}).get("Migration")
        if not (isinstance(migration_class, type) and issubclass(migration_class, Migration)):
            continue
        for index, candidate in enumerate(migration_class.operations):
            if candidate is operation:
                return module_name.rpartition(".")[2], index
    return None


def _has_progress_table(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        return BatchProgress._meta.db_table in connection.introspection.table_names(cursor)


def estimate_rows(connection: BaseDatabaseWrapper, model: type[Model]) -> int:
    """Rows in the model's table: exact up to a million, else the planner's estimate.

    ``tablesize.table_rows`` never reads a big table; when it only knows a lower bound (no
    statistics yet), the rows are counted once, which costs less than the batches will.
    """
    rows = tablesize.table_rows(connection, model._meta.db_table, limit=EXACT_ESTIMATE_LIMIT)
    if rows.count is not None and not rows.lower_bound:
        return rows.count
    return model._base_manager.db_manager(connection.alias).count()


def has_batches(migration: Migration) -> bool:
    return any(isinstance(operation, RunPythonInBatches) for operation in migration.operations)


def forget_progress(connection: BaseDatabaseWrapper, migration: Migration) -> None:
    """Drop a migration's batch progress once it is recorded applied or unapplied.

    Called by the executor in the recording transaction, so a later apply or unapply of
    the same migration (even after ``--fake``) starts from its first row.
    """
    if not has_batches(migration):
        return
    names = [migration.name, *(name for app, name in migration.replaces)]
    BatchProgress.objects.using(connection.alias).filter(
        app_label=migration.app_label, migration__in=names
    ).delete()


def progress_in_flight(connection: BaseDatabaseWrapper) -> list[dict[str, Any]]:
    """Batched operations started and not finished: running now, or killed half-way."""
    try:
        if not _has_progress_table(connection):
            return []
        rows = BatchProgress.objects.using(connection.alias).filter(finished=False)
        return [
            {
                "migration": f"{row.app_label}.{row.migration}",
                "operation_index": row.operation_index,
                "direction": row.direction,
                "rows_done": row.rows_done,
                "rows_estimated": row.rows_estimated,
                "last_pk": row.last_pk,
                "updated_at": row.updated_at.isoformat(),
            }
            for row in rows.order_by("updated_at", "pk")
        ]
    except DatabaseError:
        return []


def describe_progress(data: dict[str, Any]) -> str:
    """'1,200/3,000 rows (40%), 850 rows/s, 2s left' for a ``batch_progress`` event."""
    done, total = data["rows_done"], data["rows_total_estimate"]
    text = f"{done:,}/{total:,} rows"
    if total:
        text += f" ({min(100, 100 * done // total)}%)"
    if data.get("rate"):
        text += f", {data['rate']:,.0f} rows/s"
    if data.get("finished"):
        return text + ", done"
    if data.get("eta") is not None:
        text += f", {_duration(data['eta'])} left"
    return text


def progress_bar(data: dict[str, Any], width: int = 30) -> str:
    """A text bar for terminals: '[#########.....] 1,200/3,000 rows (40%), ...'."""
    total = data["rows_total_estimate"]
    filled = width if not total else min(width, width * data["rows_done"] // total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {describe_progress(data)}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
