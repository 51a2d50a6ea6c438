"""Portable backups: every model's rows through Django's serializers, restorable on any vendor.

The payload is gzip-compressed JSON lines: a header naming the models, one line per
object as Django's ``jsonl`` serializer writes it (with full-precision times), the rows
of ``django_migrations``, and a trailer with the counts, so that a truncated file is
noticed even before its checksum is. Rows are read with ``iterator(chunk_size=...)``
inside one read-only transaction (REPEATABLE READ on PostgreSQL: one snapshot for every
table) and written as they come, so memory stays flat however large the tables are.

A restore runs in one transaction: bring the schema to the backup's migration state when
the database is behind it (an empty database), empty the tables, load the rows in
batches (raw inserts, as ``loaddata`` does, so ``auto_now`` fields keep their values;
foreign keys checked at the end), put back ``django_migrations``, merge the live audit
and reset the sequences. Any error rolls all of it back.
"""

import datetime
import gzip
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Final

import django
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.color import no_style
from django.core.serializers.base import (
    DeserializationError,
    build_instance,
    deserialize_fk_value,
)
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.jsonl import Serializer as JsonlSerializer
from django.db import DatabaseError, router, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import StateApps
from django.db.models import Model
from django.utils.dateparse import parse_datetime

from migrator import audit, cancelling, compat, interrupts, timeouts
from migrator.backup import keepaudit
from migrator.backup.base import (
    BackupEngine,
    Statement,
    first_line,
    lock_wait_failed,
    locks_not_granted,
)
from migrator.backup.manifest import Manifest
from migrator.exceptions import BackupFailed
from migrator.models import MigrationHash
from migrator.types import (
    MIGRATOR_APP,
    MigrationKey,
    ProgressCallback,
    ProgressEvent,
    describe_keys,
    migration_label,
)

PAYLOAD_FORMAT: Final = "migrator-portable"
PAYLOAD_VERSION: Final = 1
READ_CHUNK: Final = 2000  # rows per fetch from the database
LOAD_BATCH: Final = 2000  # rows per INSERT batch (split further where the backend needs it)
COMPRESSLEVEL: Final = 1  # fast: about the size of level 6 on row data, in a third of the time


class _Encoder(DjangoJSONEncoder):
    """Django's encoder, without its rounding of times to milliseconds."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.datetime | datetime.time):
            return o.isoformat()
        return super().default(o)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, cls=_Encoder, separators=(",", ":"), ensure_ascii=False) + "\n"


def applied_models(connection) -> StateApps:
    """The models as the migrations applied to this database leave them (historical models,
    rendered as Django's migration machinery renders them), not as the code on disk has
    them: with a RemoveField pending, the column and its data are still there, and the
    manifest records the applied state, which a restore rebuilds."""
    return MigrationExecutor(connection)._create_project_state(with_applied_migrations=True).apps


def backed_up_models(connection) -> list[type[Model]]:
    """Every concrete model whose table exists here, m2m tables included, parents first,
    as the applied migrations have them (``applied_models``)."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    chosen = [
        model
        for model in applied_models(connection).get_models(include_auto_created=True)
        if not model._meta.proxy
        and model._meta.managed
        and not model._meta.swapped
        and model._meta.db_table in tables
        and router.allow_migrate_model(connection.alias, model)
    ]
    return _parents_first(chosen)


def _parents_first(models: list[type[Model]]) -> list[type[Model]]:
    """Order models so that the targets of foreign keys come first (cycles: as they come)."""
    pending, ordered = list(models), []
    while pending:
        done = set(ordered)
        ready = [
            model
            for model in pending
            if all(
                target in done or target is model or target not in pending
                for target in _targets(model)
            )
        ]
        ready = ready or pending[:1]
        ordered += ready
        pending = [model for model in pending if model not in ready]
    return ordered


def _targets(model: type[Model]) -> set[type[Model]]:
    return {
        field.related_model._meta.concrete_model
        for field in model._meta.local_concrete_fields
        if field.remote_field is not None and field.related_model is not None
    }


class PortableEngine(BackupEngine):
    format = "portable"
    engine = "django-jsonl-gzip"
    extension = ".jsonl.gz"

    def tool_version(self) -> str:
        return f"Django {django.get_version()} jsonl serializer"

    # Backup

    def dump(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        models = backed_up_models(self.connection)
        try:
            with gzip.open(path, "wt", encoding="utf-8", compresslevel=COMPRESSLEVEL) as out:
                with (
                    transaction.atomic(using=self.connection.alias),
                    cancelling.interruptible(self.connection),  # a lock wait, at once
                ):
                    self._snapshot_isolation()
                    out.write(_line(self._header(models)))
                    tables = {
                        model._meta.db_table: self._dump_model(model, out, progress)
                        for model in models
                    }
                    migrations = self._dump_migrations(out)
                objects = sum(tables.values())
                out.write(_line({"end": {"objects": objects, "migrations": migrations}}))
        except DatabaseError as exc:
            raise BackupFailed(
                f"Portable backup of {self.connection.alias!r} failed: "
                f"{first_line(exc, self.connection)}."
            ) from exc
        if migrations:
            tables[MigrationRecorder.Migration._meta.db_table] = migrations
        return tables

    def _snapshot_isolation(self) -> None:
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                # as pg_dump sets them: a database's or role's would end a long backup
                cursor.execute(
                    "SET LOCAL statement_timeout = 0; "
                    "SET LOCAL idle_in_transaction_session_timeout = 0"
                )
                # a table's lock waited for as a native backup waits (backup_lock_wait)
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true)", [timeouts.backup_lock_timeout()]
                )

    def _header(self, models: list[type[Model]]) -> dict[str, Any]:
        return {
            "format": PAYLOAD_FORMAT,
            "version": PAYLOAD_VERSION,
            "vendor": self.connection.vendor,
            "models": [
                {"model": model._meta.label_lower, "table": model._meta.db_table}
                for model in models
            ],
        }

    def _dump_model(self, model: type[Model], out: io.TextIOBase, progress) -> int:
        serializer = _Serializer()
        rows = model._base_manager.using(self.connection.alias).order_by()
        # Closed here on a failure (a full disk), while its connection is still open.
        with (
            self._lock_waited_for(model._meta.db_table),
            closing(rows.iterator(chunk_size=READ_CHUNK)) as objects,
        ):
            serializer.serialize(
                objects,
                stream=out,
                fields=[field.name for field in model._meta.local_fields if not field.primary_key],
            )
        progress(
            ProgressEvent(
                "backup_progress",
                message=f"  {model._meta.label}: {serializer.written} row(s)",
                data={"model": model._meta.label_lower, "rows": serializer.written},
            )
        )
        return serializer.written

    def _dump_migrations(self, out: io.TextIOBase) -> int:
        recorder = MigrationRecorder(self.connection)
        if not recorder.has_table():
            return 0
        count = 0
        rows = recorder.migration_qs.order_by("id").iterator(chunk_size=READ_CHUNK)
        with self._lock_waited_for(recorder.Migration._meta.db_table), closing(rows):
            for row in rows:
                applied = {"id": row.id, "app": row.app, "name": row.name, "applied": row.applied}
                out.write(_line({"migration": applied}))
                count += 1
        return count

    @contextmanager
    def _lock_waited_for(self, table: str) -> Iterator[None]:
        """Reading ``table``, whose lock was not granted within ``backup_lock_wait``:
        BackupFailed naming who holds it, asked while they still do (this session has
        none of that table's locks)."""
        try:
            yield
        except DatabaseError as exc:
            if not timeouts.is_lock_timeout(exc):
                raise
            blockers = timeouts.blocking_sessions(self.connection, [table], exclude_pid=None)
            waited = timeouts.backup_lock_wait()
            raise lock_wait_failed(self.connection, table, waited, blockers) from None

    # Restore

    def restore(
        self,
        path: Path,
        manifest: Manifest,
        *,
        keep_audit: Sequence[Statement],
        progress: ProgressCallback,
        in_place: bool = False,  # always: the file, or one transaction
    ) -> str | None:
        sqlite = self.connection.vendor == "sqlite"
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                records = (json.loads(line) for line in lines)
                header = _checked_header(next(records, None))
                if sqlite:  # must happen outside the transaction; checked before COMMIT below
                    self.connection.disable_constraint_checking()
                try:
                    with transaction.atomic(using=self.connection.alias):
                        self._load(manifest, header, records, keep_audit, progress)
                        interrupts.hold_until_the_run_ends()  # over the COMMIT
                finally:
                    if sqlite:
                        self.connection.enable_constraint_checking()
        except BackupFailed:
            raise
        except (
            DatabaseError,
            DeserializationError,
            ValueError,
            LookupError,
            OSError,
            EOFError,
            KeyError,
            TypeError,
        ) as exc:
            raise BackupFailed(
                f"Restore into {self.connection.alias!r} failed and was rolled back; nothing "
                f"was changed: {type(exc).__name__}: {first_line(exc, self.connection)}."
            ) from exc

    def _load(self, manifest, header, records, keep_audit, progress) -> None:
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        executor = MigrationExecutor(self.connection)
        own = {key for key in executor.loader.applied_migrations if key[0] == MIGRATOR_APP}
        own_hashes = keepaudit.hashes_of(self.connection, own)
        self._reach_state(executor, manifest.applied, own=own)
        # The backup's models, which wrote its rows; but migrator's own, where kept (own),
        # are the installed version's: an older one's rows take the new fields' defaults.
        state = applied_models(self.connection)
        models = _models(header, state)
        self._flush(models)
        tail: list[dict[str, Any]] = []
        objects = self._insert_objects(_model_records(records, tail), state, progress)
        migrations, end = [], None
        for record in itertools.chain(tail, records):
            if "migration" in record:
                migrations.append(record["migration"])
            elif "end" in record:
                end = record["end"]
                break
            else:
                raise BackupFailed(f"Unexpected record in the payload: {sorted(record)}.")
        if end != {"objects": objects, "migrations": len(migrations)}:
            raise BackupFailed("The payload is incomplete: its trailer is missing or wrong.")
        self._replace_migrations(migrations, own=own)
        with self.connection.cursor() as cursor:
            for sql in self.connection.ops.sequence_reset_sql(no_style(), models):
                cursor.execute(sql)
            for sql, params in keep_audit:
                cursor.execute(sql, params or None)
        self._put_back_own(own_hashes, manifest)
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # foreign keys, now
        if self.connection.vendor == "sqlite":
            self.connection.check_constraints(
                table_names=[model._meta.db_table for model in models]
            )

    def _put_back_own(self, own_hashes: list[MigrationHash], manifest: Manifest) -> None:
        """migrator's own hash records that the backup lacks, put back; and what migrator's
        migrations that the backup predates did to hash records, done to those it held."""
        keepaudit.put_back_hashes(self.connection, own_hashes)
        if (MIGRATOR_APP, audit.FAKE_UNKNOWN) not in manifest.applied:
            hashes = MigrationHash.objects.using(self.connection.alias)
            audit.fake_unknown.mark_unknown_fakes(hashes)

    def _reach_state(
        self,
        executor: MigrationExecutor,
        wanted: Iterable[MigrationKey],
        *,
        own: set[MigrationKey],
    ) -> None:
        """Migrate forward to the backup's state if behind it; refuse anything else.

        ``own``: migrator's migrations applied here. Its tables then stay as they are, the
        installed version's (they hold the lock holder, hashes and audit that outlive every
        restore), whatever the backup's say: an older migrator's backup is not behind.
        """
        loader = executor.loader
        applied, wanted = set(loader.applied_migrations), _as_loaded(loader, wanted)
        if own:
            applied -= own
            wanted = {key for key in wanted if key[0] != MIGRATOR_APP}
        extra = applied - wanted
        if extra:
            raise BackupFailed(
                f"Database {self.connection.alias!r} has migrations the backup lacks "
                f"({describe_keys(extra)}); roll it back to the backup's state, or restore "
                "into an empty database."
            )
        if applied == wanted:
            return
        nodes = _nodes_for(loader, wanted)
        targets = [
            key
            for key in nodes
            if not any(
                child in nodes and child[0] == key[0]
                for child in loader.graph.node_map[key].children
            )
        ]
        plan = executor.migration_plan(targets)
        if any(backwards for _, backwards in plan):
            raise BackupFailed("Reaching the backup's migration state would unapply migrations.")
        self._bounded(  # every user table: which ones the plan changes is not known here
            "the tables its migrations change", [], lambda: executor.migrate(targets, plan=plan)
        )

    def _flush(self, models: list[type[Model]]) -> None:
        """Empty the tables; a long transaction holding one fails the restore (exit 6)."""
        tables = [model._meta.db_table for model in models]
        statements = self.connection.ops.sql_flush(no_style(), tables, reset_sequences=True)

        def flush() -> None:
            with self.connection.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)

        self._bounded("its tables", tables, flush)

    def _bounded(self, what: str, tables: list[str], work: Callable[[], object]) -> None:
        """``work()`` waiting for its locks as a migration does (``timeouts.retrying_locks``):
        a long transaction in the way fails the restore, exit 6, naming that session."""
        try:
            timeouts.retrying_locks(self.connection, tables, work)
        except timeouts.LocksNotGranted as exc:
            raise locks_not_granted(self.connection, what, exc.attempts, exc.blockers) from None

    def _insert_objects(self, records: Iterable[dict[str, Any]], state: StateApps, progress) -> int:
        total, batch, model = 0, [], None
        for obj in _objects(records, state, self.connection.alias):
            if type(obj) is not model or len(batch) >= LOAD_BATCH:
                self._insert(model, batch)
                model, batch = type(obj), []
            batch.append(obj)
            total += 1
        self._insert(model, batch)
        progress(ProgressEvent("restore_progress", message=f"  {total} row(s) loaded"))
        return total

    def _insert(self, model: type[Model] | None, objs: list[Model]) -> None:
        """Raw inserts of one model's own table, as ``loaddata`` saves (no ``auto_now``)."""
        if model is None or not objs:
            return
        fields = model._meta.local_concrete_fields
        manager = model._base_manager.using(self.connection.alias)
        size = max(self.connection.ops.bulk_batch_size(fields, objs), 1)
        for start in range(0, len(objs), size):
            manager._insert(objs[start : start + size], fields=fields, raw=True)

    def _replace_migrations(self, rows: list[dict[str, Any]], *, own: set[MigrationKey]) -> None:
        """The backup's ``django_migrations``; where migrator's tables stayed (``own``), the
        rows of its migrations are those applied here: the backup's row of each one it has,
        then the others."""
        recorder = MigrationRecorder(self.connection)
        recorder.ensure_schema()
        queryset = recorder.migration_qs
        kept = []
        if own:
            rows = [r for r in rows if r["app"] != MIGRATOR_APP or (r["app"], r["name"]) in own]
            missing = own - {(r["app"], r["name"]) for r in rows}
            kept = [r for r in queryset.filter(app=MIGRATOR_APP) if (r.app, r.name) in missing]
        queryset.all().delete()
        Recorded = recorder.Migration
        queryset.bulk_create(
            Recorded(
                id=row["id"],
                app=row["app"],
                name=row["name"],
                applied=parse_datetime(row["applied"]),
            )
            for row in rows
        )
        with self.connection.cursor() as cursor:
            for sql in self.connection.ops.sequence_reset_sql(no_style(), [Recorded]):
                cursor.execute(sql)
        queryset.bulk_create(Recorded(app=r.app, name=r.name, applied=r.applied) for r in kept)


def _as_loaded(loader: MigrationLoader, keys: Iterable[MigrationKey]) -> set[MigrationKey]:
    """Rows of ``django_migrations`` as Django's loader reads them: a squash is applied
    when all it replaces are, and only then."""
    keys = set(keys)
    squashes = set(loader.replacements)
    return (keys - squashes) | {
        key for key in squashes if compat.all_replaced_applied(loader, key, keys)
    }


def _nodes_for(loader: MigrationLoader, wanted: set[MigrationKey]) -> set[MigrationKey]:
    """The graph's nodes that make ``wanted`` (``_as_loaded``): a migration that Django's
    loader took out of the graph for the squash that replaces it is made by that squash;
    a squash out of the graph, by the migrations it replaces. BackupFailed when no node
    makes one: it is not on disk, or the backup has only part of what a squash in the
    graph replaces."""
    graph = loader.graph
    squash_of = {
        tuple(replaced): key
        for key, squash in loader.replacements.items()
        for replaced in squash.replaces
    }
    nodes: set[MigrationKey] = set()
    missing: list[MigrationKey] = []
    partly: dict[MigrationKey, list[MigrationKey]] = {}  # squash: what the backup has of it
    for key in wanted:
        node = key
        while node not in graph.nodes and node in squash_of:
            node = squash_of[node]
        if node in graph.nodes and node in wanted:
            nodes.add(node)
        elif node in graph.nodes:
            partly.setdefault(node, []).append(key)
        elif key not in loader.replacements:
            missing.append(key)
    if missing:
        raise BackupFailed(
            f"The backup's migrations {describe_keys(missing)} are not on disk; cannot create "
            "its schema: check out the code it was taken with."
        )
    if partly:
        squash, replaced = next(iter(partly.items()))
        raise BackupFailed(
            f"The backup has {describe_keys(replaced)} applied, only part of what "
            f"{migration_label(squash)} replaces; no plan reaches that state while the squash "
            "is on disk: check out the code the backup was taken with."
        )
    return nodes


class _Serializer(JsonlSerializer):
    """Django's JSON lines serializer, one ``write`` per object, counting them."""

    def start_serialization(self) -> None:
        super().start_serialization()
        self.written = 0

    def end_object(self, obj: Model) -> None:
        self.stream.write(_line(self.get_dump_object(obj)))
        self.written += 1
        self._current = None


def _checked_header(header: dict[str, Any] | None) -> dict[str, Any]:
    if not header or header.get("format") != PAYLOAD_FORMAT:
        raise BackupFailed("The payload is not a migrator portable backup.")
    if header.get("version") != PAYLOAD_VERSION:
        raise BackupFailed(f"Unknown portable payload version {header.get('version')!r}.")
    return header


def _models(header: dict[str, Any], state: StateApps) -> list[type[Model]]:
    """The header's models, as the backup's migration state (rebuilt here) has them."""
    models = []
    for entry in header["models"]:
        try:
            models.append(state.get_model(entry["model"]))
        except LookupError:
            raise BackupFailed(
                f"The backup holds rows of {entry['model']!r}, which the migration files on "
                "disk do not make; check out the code it was taken with."
            ) from None
    return models


def _objects(records: Iterable[dict[str, Any]], state: StateApps, using: str) -> Iterator[Model]:
    """The rows as instances of ``state``'s models, built as Django's ``python``
    deserializer builds them (it looks models up in the project's current ones). The
    payload holds each model's local fields only: no many-to-many (their own tables)."""
    for record in records:
        try:
            model = state.get_model(record["model"])
            data = {model._meta.pk.attname: model._meta.pk.to_python(record.get("pk"))}
            for name, value in record["fields"].items():
                field = model._meta.get_field(name)
                if field.many_to_one or field.one_to_one:
                    data[field.attname] = deserialize_fk_value(field, value, using, False)
                else:
                    data[field.name] = field.to_python(value)
            yield build_instance(model, data, using)
        except (LookupError, ValidationError, FieldDoesNotExist) as exc:
            raise DeserializationError.WithData(
                exc, record.get("model"), record.get("pk"), None
            ) from exc


def _model_records(records: Iterator[dict[str, Any]], tail: list) -> Iterator[dict[str, Any]]:
    """The object records at the head of ``records``; the first other record goes to tail."""
    for record in records:
        if "model" not in record:
            tail.append(record)
            return
        yield record
