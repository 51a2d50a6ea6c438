"""Taking, listing, verifying and pruning backups."""

import logging
import platform
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

import migrator
from migrator import audit, guard, secrets
from migrator.backup import encryption
from migrator.backup.base import BackupEngine, connect, engine_for, first_line, server_version
from migrator.backup.manifest import (
    LIST_HINT,
    REASONS,
    Manifest,
    check_backup_id,
    database_identity,
    disk_migrations,
    load_manifest,
    migration_state,
    new_backup_id,
)
from migrator.backup.storage import BackupStore, backup_store, file_digest
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed, InvalidRequest, PayloadDamaged
from migrator.models import Run
from migrator.types import ConfirmCallback, ProgressCallback, ProgressEvent, ignore_progress

logger = logging.getLogger(__name__)


def create_backup(
    database: str = DEFAULT_DB_ALIAS,
    *,
    format: str = "native",
    label: str = "",
    reason: str = "manual",
    run: Run | None = None,
    progress: ProgressCallback = ignore_progress,
) -> Manifest:
    """Back up a database; the backup exists once its payload is on disk and hashed."""
    if reason not in REASONS:
        raise InvalidRequest(f"Unknown backup reason {reason!r}; one of {', '.join(REASONS)}.")
    if not label.isprintable():  # a newline would break backup --list's one line each
        raise InvalidRequest(
            f"The label {label!r} is not one line of printable text; give a short note, "
            "such as the release it precedes."
        )
    label = secrets.mask(label)  # typed by a person: a manifest holds no secret all the same
    connection = connections[database]
    engine = engine_for(connection, format)
    connect(connection, must_exist=True)
    engine.check_backup()
    keys = encryption.configured_recipients()
    if keys:
        encryption.parse_recipients(keys)  # a bad key is refused before anything is written
    store = backup_store()
    disk = disk_migrations()
    state = migration_state(connection, disk)
    backup_id = new_backup_id(database)
    filename = f"{backup_id}{engine.extension}"
    identity = database_identity(connection)
    progress(ProgressEvent("backup_start", message=f"Backing up {database!r} ({format})..."))
    started = time.monotonic()
    try:
        with store.staging(filename) as staged:
            size, sha256, tables = _write_payload(engine, staged, keys, progress)
            if migration_state(connection, disk) != state:
                raise BackupFailed(
                    f"Migrations were applied to {database!r} during the backup; take it again."
                )
            manifest = Manifest(
                id=backup_id,
                created=datetime.now(UTC).isoformat(),
                label=label,
                reason=reason,
                database=database,
                database_name=identity.name,
                database_host=identity.host,
                database_port=identity.port,
                vendor=connection.vendor,
                server_version=server_version(connection),
                format=format,
                engine=engine.engine,
                tool=engine.tool_version(),
                django_version=django.get_version(),
                migrator_version=migrator.__version__,
                python_version=platform.python_version(),
                payload=filename,
                size=size,
                sha256=sha256,
                migrations=state,
                run_id=run.pk if run is not None else None,
                host=socket.gethostname(),
                actor=audit.actor(),
                duration=round(time.monotonic() - started, 3),
                encryption=encryption.AGE if keys else "",
                recipients=list(keys),
                tables=tables,
                large_objects=engine.large_objects(),
            )
            store.publish(staged, filename, backup_id, manifest.to_json())
    except OSError as exc:
        raise BackupFailed(
            f"Cannot write backup {backup_id!r} to {store.location}: {first_line(exc)}."
        ) from exc
    except DatabaseError as exc:
        raise BackupFailed(
            f"Backup of {database!r} failed: {first_line(exc, connection)}; nothing was stored."
        ) from exc
    logger.info("Backup %s of %r taken: %s, %d bytes", backup_id, database, format, size)
    progress(
        ProgressEvent(
            "backup_done",
            message=f"Backup {backup_id} taken ({human_size(size)}, {manifest.duration:.1f}s).",
            data={"backup_id": backup_id},
        )
    )
    return manifest


def _write_payload(
    engine: BackupEngine, staged: Path, keys: tuple[str, ...], progress: ProgressCallback
) -> tuple[int, str, dict[str, int]]:
    """The payload, encrypted while it is written when there are recipients.

    Returns its size and SHA-256 (of the bytes stored) and the rows of each table.
    """
    if not keys:
        tables = engine.dump(staged, progress)
        with staged.open("rb") as handle:
            return (*file_digest(handle), tables)
    with (
        staged.open("wb") as destination,
        encryption.encrypting(destination, keys) as (fifo, sealed),
    ):
        tables = engine.dump_stream(fifo, progress)
    return sealed.size, sealed.sha256, tables


@dataclass
class BackupListing:
    """The backups in the store: the readable ones, newest first, and the ids of those
    whose manifest cannot be read, with why (a list must not leave them out silently)."""

    manifests: list[Manifest]
    unreadable: dict[str, str]


def scan_backups(database: str | None = None) -> BackupListing:
    """Every backup; given an alias, only the readable backups of the database behind it
    (its vendor, host, port and name: another alias may reach it, and another database may
    have been reached through this alias). An unreadable manifest names no database, so it
    is reported whatever the alias."""
    store = backup_store()
    identity = database_identity(connections[database]) if database is not None else None
    manifests, unreadable = [], {}
    for backup_id in store.backup_ids():
        raw = store.read_manifest(backup_id)
        if raw is None:  # deleted since it was listed (a prune)
            continue
        try:
            manifest = load_manifest(raw, backup_id=backup_id)
        except BackupFailed as exc:
            unreadable[backup_id] = str(exc)
            continue
        if identity is None or manifest.belongs_to(identity):
            manifests.append(manifest)
    manifests.sort(key=lambda m: (m.created, m.id), reverse=True)
    return BackupListing(manifests, unreadable)


def list_backups(database: str | None = None) -> list[Manifest]:
    """Every readable backup, newest first, as ``scan_backups``; the unreadable are logged."""
    listing = scan_backups(database)
    for backup_id, why in listing.unreadable.items():
        logger.warning("Skipping backup %s: %s", backup_id, why)
    return listing.manifests


def get_manifest(backup_id: str) -> Manifest:
    """The checked manifest of a backup; BackupFailed (exit 6) when unknown or altered."""
    return _read(backup_store(), check_backup_id(backup_id))


def _read(store: BackupStore, backup_id: str) -> Manifest:
    raw = store.read_manifest(backup_id)
    if raw is None:
        raise BackupFailed(f"No backup {backup_id!r} in {store.location}; {LIST_HINT}.")
    return load_manifest(raw, backup_id=backup_id)


def verify_backup(backup_id: str) -> Manifest:
    """Check the manifest's seal and re-hash the payload; BackupFailed when either fails."""
    store = backup_store()
    manifest = _read(store, check_backup_id(backup_id))
    check_payload(store, manifest)
    return manifest


@contextmanager
def verified_payload(
    backup_id: str, identity: str | None, *, checksum: bool = True
) -> Iterator[tuple[Manifest, list[Any], Path]]:
    """``verify_backup`` of the payload made local, the age identities that decrypt an
    encrypted backup ([] for a plaintext one), and that local path, for a restore or a
    drill to read from again: a payload in a Django storage is downloaded once, here.

    An encrypted payload is decrypted whole and thrown away as it is hashed, so a missing
    or wrong identity, or an altered payload, is refused before anything is touched.
    ``checksum=False``: a plaintext payload is left for the caller to hash
    (``check_local_payload``) before it touches anything.
    """
    store = backup_store()
    manifest = _read(store, check_backup_id(backup_id))
    identities = _identities(manifest, identity)
    with ExitStack() as stack:
        with _reading(manifest):  # a download that fails
            local = stack.enter_context(store.local_payload(manifest.payload))
        if identities:
            _check_decryptable(manifest, local, identities)
        elif checksum:
            check_local_payload(manifest, local)
        yield manifest, identities, local


def _identities(manifest: Manifest, identity: str | None) -> list[Any]:
    """The age identities of an encrypted backup, [] for a plaintext one."""
    if not manifest.encryption:
        return []
    path = encryption.identity_file(identity)
    if path is None:
        raise BackupFailed(
            f"Backup {manifest.id!r} is encrypted to "
            f"{encryption.describe_recipients(manifest.recipients)}; "
            f"{encryption.IDENTITY_HINT}. Nothing was changed."
        )
    return encryption.load_identities(path)


def check_payload(store: BackupStore, manifest: Manifest) -> None:
    """Hash a plaintext payload; BackupFailed unless it is the one the manifest describes."""
    with _reading(manifest), store.open_payload(manifest.payload) as handle:
        check_digest(manifest, *file_digest(handle))


def check_local_payload(manifest: Manifest, local: Path) -> None:
    """``check_payload`` of a payload made local (``BackupStore.local_payload``)."""
    with _reading(manifest), local.open("rb") as handle:
        check_digest(manifest, *file_digest(handle))


def _check_decryptable(manifest: Manifest, local: Path, identities: list[Any]) -> None:
    with _reading(manifest), local.open("rb") as handle:
        try:
            size, sha256 = encryption.check_decryptable(
                handle, identities, backup_id=manifest.id, keys=manifest.recipients
            )
        except BackupFailed:  # a payload that is not the one written says so first
            check_local_payload(manifest, local)
            raise
    check_digest(manifest, size, sha256)


@contextmanager
def _reading(manifest: Manifest) -> Iterator[None]:
    """A payload that is missing or cannot be read as BackupFailed."""
    try:
        yield
    except FileNotFoundError:
        raise PayloadDamaged(
            f"The payload of backup {manifest.id!r} ({manifest.payload}) is missing."
        ) from None
    except OSError as exc:
        raise BackupFailed(f"Cannot read backup {manifest.id!r}: {first_line(exc)}.") from exc


def check_digest(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.size:
        raise PayloadDamaged(
            f"The payload of backup {manifest.id!r} is damaged: {size} bytes instead of "
            f"{manifest.size} (truncated?); do not restore it."
        )
    if sha256 != manifest.sha256:
        raise PayloadDamaged(
            f"The payload of backup {manifest.id!r} is damaged: its SHA-256 does not match "
            "the manifest; do not restore it."
        )


@dataclass
class PruneReport:
    """What ``prune_backups`` deleted and kept; ``as_dict()`` is the ``--json`` document."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)  # kept as the current state's only one
    damaged: list[str] = field(default_factory=list)  # failed verification: deleted, never kept
    orphans: list[str] = field(default_factory=list)  # files without a manifest: deleted

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "kept": self.kept,
            "protected": self.protected,
            "damaged": self.damaged,
            "orphans": self.orphans,
        }


def prune_backups(
    *,
    keep: int | None = None,
    database: str = DEFAULT_DB_ALIAS,
    assume_yes: bool = False,
    confirm: ConfirmCallback | None = None,
) -> PruneReport:
    """Delete all but the newest ``keep`` intact backups of a database (None: BACKUP_KEEP).

    Only the backups of the database behind the alias are touched (``list_backups``). A
    backup is kept only after its payload is verified: a damaged one is deleted and never
    counts. The newest intact backup of the database's current migration state is kept
    even beyond ``keep``: it is what a restore would need. The store's orphans (payloads
    whose manifest is gone, of any database: nothing can restore them) are deleted too.
    Pruning deletes, so the production guard applies.
    """
    if keep is None:
        keep = get_settings().backup_keep
    if keep < 0:
        raise InvalidRequest("--keep must be 0 or more.")
    connection = connections[database]
    connect(connection)
    recorder = MigrationRecorder(connection)
    current = frozenset(recorder.applied_migrations()) if recorder.has_table() else frozenset()
    manifests = list_backups(database)
    intact = _Verified(backup_store())
    report = PruneReport()
    kept = _kept(manifests, keep, current, intact, report)
    report.kept = [m.id for m in manifests if m in kept]
    report.damaged = [m.id for m in manifests if intact.damaged(m)]
    doomed = [m for m in manifests if m not in kept]
    orphans = intact.store.orphans()
    if doomed or orphans:
        files = f" and {len(orphans)} file(s) without a manifest" if orphans else ""
        guard.require_confirmation(
            connection,
            question=f"Delete {len(doomed)} backup(s) of {database!r}{files} in "
            f"{get_settings().environment}?",
            assume_yes=assume_yes,
            confirm=confirm,
            command="backup",
            arguments={"prune": True, "keep": keep},
        )
    for manifest in doomed:
        intact.store.delete(manifest.id, manifest.payload)
        report.deleted.append(manifest.id)
        logger.info("Pruned backup %s", manifest.id)
    for filename in orphans:
        intact.store.delete_file(filename)
        report.orphans.append(filename)
        logger.info("Pruned %s: its manifest was gone", filename)
    return report


def _kept(
    manifests: list[Manifest],
    keep: int,
    current: frozenset,
    intact: "_Verified",
    report: PruneReport,
) -> list[Manifest]:
    """The newest ``keep`` intact backups, and the newest intact one of the ``current``
    migration state if none of those is (``report.protected``)."""
    kept: list[Manifest] = []
    for manifest in manifests:
        if len(kept) == keep:
            break
        if intact(manifest):
            kept.append(manifest)
    if not any(m.applied == current for m in kept):
        protected = next((m for m in manifests if m.applied == current and intact(m)), None)
        if protected is not None:
            report.protected.append(protected.id)
            kept.append(protected)
    return kept


class _Verified:
    """Verifies each backup at most once; remembers which are damaged. A store that fails
    to read one (S3 answering 500) is no verdict: its BackupFailed stops the caller."""

    def __init__(self, store: BackupStore) -> None:
        self.store = store
        self.results: dict[str, bool] = {}

    def __call__(self, manifest: Manifest) -> bool:
        if manifest.id not in self.results:
            try:
                check_payload(self.store, manifest)
            except PayloadDamaged as exc:  # a store that fails to answer stops the prune
                logger.warning("Not keeping backup %s: %s", manifest.id, exc)
                self.results[manifest.id] = False
            else:
                self.results[manifest.id] = True
        return self.results[manifest.id]

    def damaged(self, manifest: Manifest) -> bool:
        return self.results.get(manifest.id) is False


def human_size(size: int) -> str:
    """'1.2 MB', for messages and listings."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
