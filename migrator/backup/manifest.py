"""The manifest: what a backup holds, sealed with a checksum so that an edit is noticed.

A manifest is a JSON document written beside its payload once the payload is complete
on disk. Besides the payload's size and SHA-256 it records the migration state of the
database at backup time, so that ``restore`` can refuse a backup that does not fit the
migration files on disk. It never holds a password or a URL with credentials: only the
alias, the database's name, the vendor and the server's version.

``checksum`` is the SHA-256 of the manifest's other fields in canonical JSON: a seal
against accidental or careless edits, not a signature (it would have to be keyed, and
a backup must stay restorable by a project with another ``SECRET_KEY``).
"""

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from migrator import integrity
from migrator.exceptions import BackupFailed
from migrator.types import MIGRATOR_APP, MigrationKey

MANIFEST_VERSION: Final = 1
REASONS: Final = ("manual", "pre-migrate", "pre-rollback", "pre-restore")
FORMATS: Final = ("native", "portable")
BACKUP_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
LIST_HINT: Final = "run 'manage.py backup --list' to see the backups"
# Older manifests lack these.
LATER_FIELDS: Final = frozenset(
    {"database_host", "database_port", "encryption", "recipients", "tables", "large_objects"}
)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """One backup's description; ``as_dict()`` is its JSON form (``backup --show --json``)."""

    id: str
    created: str  # ISO 8601, UTC
    label: str
    reason: str
    database: str  # the alias, for people: backups belong to the database's identity
    database_name: str  # NAME: a database name or a SQLite file (never credentials)
    vendor: str
    server_version: str
    format: str  # native | portable
    engine: str  # pg_dump-custom | sqlite-backup-api | django-jsonl-gzip
    tool: str  # the version of what wrote the payload
    django_version: str
    migrator_version: str
    python_version: str
    payload: str  # file name in the store
    size: int
    sha256: str
    migrations: list[list[str]] = field(default_factory=list)  # [app_label, name, file hash]
    run_id: int | None = None
    host: str = ""
    actor: str = ""
    duration: float = 0.0
    encryption: str = ""  # "age" when the payload is an age file, else ""
    recipients: list[str] = field(default_factory=list)  # the age public keys it is for
    tables: dict[str, int] = field(default_factory=dict)  # rows per table at backup time
    manifest_version: int = MANIFEST_VERSION
    database_host: str | None = None  # None: written before backups had an identity
    database_port: str | None = None
    # PostgreSQL large objects in a native backup; None: not counted (another format, or
    # written before they were), so the restore must expect some.
    large_objects: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def applied(self) -> frozenset[MigrationKey]:
        """The migrations applied in the backed-up database."""
        return frozenset((app_label, name) for app_label, name, _ in self.migrations)

    @property
    def holds_audit(self) -> bool:
        """Whether restoring it brings migrator's tables back, for the live audit to merge
        into (a native backup holds them only when the backed-up database had them)."""
        return self.format == "portable" or any(app == MIGRATOR_APP for app, _ in self.applied)

    @property
    def identity(self) -> "DatabaseIdentity":
        """The database this backup was taken of."""
        return DatabaseIdentity(
            self.vendor, self.database_host or "", self.database_port or "", self.database_name
        )

    def belongs_to(self, identity: "DatabaseIdentity") -> bool:
        """Whether this is a backup of that database (older manifests: same vendor and name)."""
        if self.database_host is None:
            return (self.vendor, self.database_name) == (identity.vendor, identity.name)
        return self.identity == identity

    def to_json(self) -> bytes:
        """The sealed document, as written to the store."""
        document = self.as_dict()
        document["checksum"] = _seal(document)
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class DatabaseIdentity:
    """Which database a backup belongs to: the same whatever alias reaches it."""

    vendor: str
    host: str  # '' for SQLite, and for PostgreSQL's default (local socket)
    port: str
    name: str  # a database name, or a SQLite file's absolute path

    def describe(self) -> str:
        if self.vendor == "sqlite":
            return f"SQLite file {self.name}"
        port = f", port {self.port}" if self.port else ""
        return f"{self.vendor} database {self.name!r} at {self.host or 'the local socket'}{port}"


DEFAULT_PORTS: Final = {"postgresql": "5432"}


def database_identity(connection: BaseDatabaseWrapper) -> DatabaseIdentity:
    """The identity of the database behind a connection, from its settings (no query)."""
    settings = connection.settings_dict
    name = str(settings["NAME"] or "")
    if connection.vendor == "sqlite":
        path = name if connection.is_in_memory_db() else str(Path(name).resolve())
        return DatabaseIdentity("sqlite", "", "", path)
    port = str(settings.get("PORT") or DEFAULT_PORTS.get(connection.vendor, ""))
    return DatabaseIdentity(connection.vendor, str(settings.get("HOST") or ""), port, name)


def load_manifest(raw: bytes, *, backup_id: str) -> Manifest:
    """Parse and check a stored manifest; anything unexpected is BackupFailed (exit 6)."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupFailed(
            f"The manifest of backup {backup_id!r} is not valid JSON: {exc}."
        ) from None
    if not isinstance(document, dict):
        raise BackupFailed(f"The manifest of backup {backup_id!r} is not a JSON object.")
    checksum = document.pop("checksum", None)
    if checksum != _seal(document):
        raise BackupFailed(
            f"The manifest of backup {backup_id!r} was altered (its checksum does not match); "
            "do not restore it."
        )
    names = {f.name for f in fields(Manifest)}
    if not names - LATER_FIELDS <= set(document) <= names:
        raise BackupFailed(
            f"The manifest of backup {backup_id!r} has unexpected fields "
            f"{sorted(set(document) ^ names - LATER_FIELDS)}; was it written by another version "
            "of migrator?"
        )
    manifest = Manifest(**document)
    problems = _problems(manifest, backup_id)
    if problems:
        raise BackupFailed(f"The manifest of backup {backup_id!r} is invalid: {problems[0]}.")
    return manifest


def _problems(manifest: Manifest, backup_id: str) -> list[str]:
    checks = [
        (manifest.manifest_version == MANIFEST_VERSION, "unknown manifest version"),
        (manifest.id == backup_id, f"it describes {manifest.id!r}"),
        (manifest.format in FORMATS, f"unknown format {manifest.format!r}"),
        (manifest.reason in REASONS, f"unknown reason {manifest.reason!r}"),
        (isinstance(manifest.size, int) and manifest.size >= 0, "bad payload size"),
        (bool(re.fullmatch(r"[0-9a-f]{64}", str(manifest.sha256))), "bad payload SHA-256"),
        (
            str(manifest.payload).startswith(f"{backup_id}.") and "/" not in manifest.payload,
            f"unexpected payload name {manifest.payload!r}",
        ),
        (
            isinstance(manifest.migrations, list)
            and all(isinstance(m, list) and len(m) == 3 for m in manifest.migrations),
            "bad migration state",
        ),
        (manifest.encryption in ("", "age"), f"unknown encryption {manifest.encryption!r}"),
        (
            manifest.large_objects is None
            or (isinstance(manifest.large_objects, int) and manifest.large_objects >= 0),
            "bad large object count",
        ),
    ]
    return [problem for ok, problem in checks if not ok]


def _seal(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_backup_id(alias: str, now: datetime | None = None) -> str:
    """``<alias>-<UTC time>-<random>``: sortable by time, unique, safe as a file name."""
    now = now or datetime.now(UTC)
    safe_alias = re.sub(r"[^A-Za-z0-9_.-]", "_", alias)[:40] or "db"
    return f"{safe_alias}-{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def check_backup_id(backup_id: str) -> str:
    """A backup id as typed by a user, refused when it could name anything but a backup."""
    if not BACKUP_ID.fullmatch(backup_id or ""):
        raise BackupFailed(f"{backup_id!r} is not a backup id; {LIST_HINT}.")
    return backup_id


def disk_migrations() -> Mapping[MigrationKey, Migration]:
    """Every migration file on disk, read without building the graph (which may be broken)."""
    loader = MigrationLoader(None, load=False, ignore_no_migrations=True)
    loader.load_disk()
    return loader.disk_migrations


def migration_state(
    connection: BaseDatabaseWrapper, disk: Mapping[MigrationKey, Migration]
) -> list[list[str]]:
    """Each applied migration with the hash of its file on disk ('' when it has no file)."""
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return []
    state = []
    for key in sorted(recorder.applied_migrations()):
        migration = disk.get(key)
        checksum = integrity.migration_hash(migration) if migration is not None else ""
        state.append([key[0], key[1], checksum])
    return state


def state_differences(manifest: Manifest, disk: Mapping[MigrationKey, Migration]) -> list[str]:
    """Applied migrations of the backup whose file is missing or differs on disk."""
    differences = []
    squashed = {key for migration in disk.values() for key in migration.replaces}
    for app_label, name, checksum in manifest.migrations:
        migration = disk.get((app_label, name))
        if migration is None and (app_label, name) in squashed:
            continue  # its file went when it was squashed; the squash is on disk
        if migration is None:
            differences.append(f"{app_label}.{name} is not on disk")
        elif integrity.migration_hash(migration) != checksum:
            differences.append(f"{app_label}.{name} differs from the file on disk")
    return differences
