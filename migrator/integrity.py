"""Hashes of migration files, so that edited, deleted or conflicting history is noticed.

Each applied migration's file is hashed (SHA-256, line endings normalised, every other
byte counts) and compared with the hash recorded when it was applied. ``verify()`` returns
every problem as data; ``require_verified()`` raises ``IntegrityViolation`` (exit 2) for
the ones that are errors, so that ``safemigrate`` and ``rollback`` stop before they start.

Squashes: Django records a squash applied on a fresh database under the names it replaces
(and later under its own name, in ``check_replacements``); migrator records the squash's
hash under the squash's name. A replaced migration whose file is gone is covered by the
squash on disk; a squash recorded only through its replaced migrations (a database
migrated through them) is accepted when each of those carries a hash.
"""

import hashlib
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeAlias

from django.apps import apps
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.exceptions import (
    AmbiguityError,
    BadMigrationError,
    NodeNotFoundError,
)
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.questioner import MigrationQuestioner
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ProjectState

from migrator import compat, packages
from migrator.conf import get_settings
from migrator.exceptions import (
    IntegrityViolation,
    InvalidRequest,
    MigratorError,
    UnknownTarget,
    UnloadableMigration,
)
from migrator.models import MigrationHash, Run
from migrator.types import (
    MigrationKey,
    ProgressCallback,
    ProgressEvent,
    ignore_progress,
    migration_label,
)

HASH_ALGORITHM: Final = "sha256:1"

# Kinds of problem, in the order reports list them.
CHANGED: Final = "changed"
MISSING: Final = "missing"
CONFLICT: Final = "conflict"
INCONSISTENT: Final = "inconsistent_history"
MODEL_CHANGES: Final = "model_changes"
UNVERIFIED: Final = "unverified"
KINDS: Final = (CHANGED, MISSING, CONFLICT, INCONSISTENT, MODEL_CHANGES, UNVERIFIED)

ERROR: Final = "error"
WARNING: Final = "warning"

CHECK_IDS: Final = {
    CHANGED: "migrator.E001",
    MISSING: "migrator.E002",
    CONFLICT: "migrator.E003",
    INCONSISTENT: "migrator.E004",
    MODEL_CHANGES: "migrator.E005",
    UNVERIFIED: "migrator.W001",
}
THIRD_PARTY_ID: Final = "migrator.W002"


# Hashing ----------------------------------------------------------------------------------


def _normalised(content: bytes) -> bytes:
    if b"\r" not in content:  # the common case: no copies
        return content
    return content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _sha256_v1(content: bytes) -> str:
    return hashlib.sha256(_normalised(content)).hexdigest()


# Every algorithm a hash may have been recorded with; a new one gets a new version.
ALGORITHMS: Final = {HASH_ALGORITHM: _sha256_v1}


def migration_file(migration: Migration) -> Path | None:
    """The source file a migration was loaded from, or None when it has none."""
    module = sys.modules.get(type(migration).__module__)
    filename = getattr(module, "__file__", None)
    return Path(filename) if filename else None


def file_hash(path: Path, algorithm: str = HASH_ALGORITHM) -> str:
    """``sha256:1:<hex>`` of the file with CRLF and CR line endings normalised to LF."""
    return _checksum(path.read_bytes(), algorithm)


def migration_hash(migration: Migration) -> str:
    """The hash of a migration's file; empty when the migration has no file.

    Read with ``open()``, not pathlib: a run hashes each migration it applies, and making
    Path objects cost more than the hashing (benchmarks/overhead.py).
    """
    filename = getattr(sys.modules.get(type(migration).__module__), "__file__", None)
    if not filename:
        return ""
    try:
        with open(filename, "rb") as source:
            return _checksum(source.read())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""


def _checksum(content: bytes, algorithm: str = HASH_ALGORITHM) -> str:
    return f"{algorithm}:{ALGORITHMS[algorithm](content)}"


def algorithm_of(checksum: str) -> str:
    """``sha256:1`` of ``sha256:1:<hex>``; empty when the value has no algorithm."""
    algorithm, _, digest = checksum.rpartition(":")
    return algorithm if digest else ""


def short(checksum: str) -> str:
    """A hash shortened for humans (``sha256:1:3f2a9c0d1e2b4a5c...``); JSON has the full one."""
    algorithm = algorithm_of(checksum)
    if not algorithm:
        return checksum or "(none)"
    return f"{checksum[: len(algorithm) + 1 + 16]}..."


# The report -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with a database's applied history; knows if it blocks (an error)."""

    kind: str
    severity: str  # ERROR or WARNING
    check_id: str
    app_label: str
    message: str  # one line: what is wrong
    hint: str  # one line: what to do
    migration: str = ""  # "app_label.name", when the problem is about one migration
    path: str = ""
    recorded_hash: str = ""
    current_hash: str = ""
    applied_at: datetime | None = None
    run_id: int | None = None
    third_party: bool = False
    nodes: tuple[str, ...] = ()  # the leaf nodes of a conflict

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def line(self) -> str:
        return f"{self.message} {self.hint}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "id": self.check_id,
            "app_label": self.app_label,
            "migration": self.migration or None,
            "path": self.path or None,
            "recorded_hash": self.recorded_hash or None,
            "current_hash": self.current_hash or None,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "run_id": self.run_id,
            "third_party": self.third_party,
            "nodes": list(self.nodes),
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class IntegrityReport:
    """Everything ``verify()`` found on one database; ``as_dict()`` is the ``--json`` form."""

    database: str
    checked: int = 0  # applied migrations whose files were looked at
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if not problem.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def of_kind(self, kind: str) -> list[Problem]:
        return [problem for problem in self.problems if problem.kind == kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "ok": self.ok,
            "checked": self.checked,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [problem.as_dict() for problem in self.problems],
        }


@dataclass
class _History:
    """What the database says: applied migrations and migrator's hash records."""

    connection: BaseDatabaseWrapper
    applied: dict[MigrationKey, datetime | None]  # as Django's loader sees it: with squashes
    hashes: dict[MigrationKey, str]

    @classmethod
    def read(cls, connection: BaseDatabaseWrapper, loader: MigrationLoader) -> "_History":
        """Reuse the loader's applied state when it read this connection (one query less)."""
        if loader.connection is connection and loader.applied_migrations is not None:
            rows = loader.applied_migrations
        else:
            rows = MigrationRecorder(connection).applied_migrations()
        applied = {key: getattr(row, "applied", None) for key, row in rows.items()}
        return cls(connection, applied, _hash_records(connection) if applied else {})

    def record_details(self) -> dict[MigrationKey, tuple[datetime | None, int | None]]:
        """When each hash was recorded and by which run: only read when there are problems."""
        if not self.hashes:
            return {}
        rows = MigrationHash.objects.using(self.connection.alias).values_list(
            "app_label", "name", "applied_at", "run_id"
        )
        return {(app, name): (at, run) for app, name, at, run in rows}


def has_hash_table(connection: BaseDatabaseWrapper) -> bool:
    """Whether migrator's hash table exists (not on a database only plain ``migrate`` saw)."""
    with connection.cursor() as cursor:
        return MigrationHash._meta.db_table in connection.introspection.table_names(cursor)


def _hash_records(connection: BaseDatabaseWrapper) -> dict[MigrationKey, str]:
    if not has_hash_table(connection):
        return {}
    rows = MigrationHash.objects.using(connection.alias).values_list(
        "app_label", "name", "checksum"
    )
    return {(app, name): checksum for app, name, checksum in rows}


# Verification -----------------------------------------------------------------------------


def load(connection: BaseDatabaseWrapper) -> MigrationLoader:
    """The migration graph with the database's applied state; a broken graph is exit 2."""
    with graph_errors():
        return MigrationLoader(connection, ignore_no_migrations=True)


@contextmanager
def graph_errors() -> Iterator[None]:
    """Migration files that Django cannot load, as migrator's one-line errors."""
    try:
        yield
    except Exception as exc:
        if (error := unloadable(exc)) is None:
            raise
        raise error from exc


def unloadable(exc: BaseException) -> MigratorError | None:
    """exc as the error of migration files Django cannot load; None when it is not that.

    A dependency's file that is gone is exit 2 (missing history); a file that does not
    import (a syntax error, an import of something removed, no ``Migration`` class) exit 1.
    """
    if isinstance(exc, NodeNotFoundError):
        return IntegrityViolation(
            f"{exc}. Restore the missing migration file from version control."
        )
    if isinstance(exc, BadMigrationError):
        return UnloadableMigration(
            f"{exc}. Give the file a Migration class, or move it out of the migrations package."
        )
    if isinstance(exc, SyntaxError):
        return UnloadableMigration(
            f"Cannot load {exc.filename}, line {exc.lineno}: {exc.msg}. "
            "Fix the file and run the command again."
        )
    if (where := _migration_being_imported(exc)) is None:
        return None
    lines = str(exc).strip().splitlines()
    return UnloadableMigration(
        f"Cannot load {where}: {type(exc).__name__}{': ' + lines[0] if lines else ''}. "
        "Fix the file, or install what it imports, and run the command again."
    )


def _migration_being_imported(exc: BaseException) -> str | None:
    """'file, line N' of the innermost migration module whose import raised exc."""
    migration_packages = {
        package
        for config in apps.get_app_configs()
        if (package := MigrationLoader.migrations_module(config.label)[0])
    }
    where = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        name = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "<module>" and (
            name in migration_packages or name.rpartition(".")[0] in migration_packages
        ):
            where = f"{frame.f_code.co_filename}, line {line}"
    return where


def verify(
    connection: BaseDatabaseWrapper,
    loader: MigrationLoader,
    *,
    only: set[MigrationKey] | None = None,
    check_models: bool | None = None,
) -> IntegrityReport:
    """Compare the database's applied history with the files on disk; change nothing.

    ``only`` limits the check to those migrations (and their apps, for conflicts and
    history), as a rollback needs. ``check_models`` runs Django's autodetector like
    ``makemigrations --check``; by default only when checking everything.
    """
    history = _History.read(connection, loader)
    scope = _Scope(loader, only)
    report = IntegrityReport(database=connection.alias)
    third_party = packages.third_party_apps(loader)
    keys = scope.applied_keys(history)
    report.checked = len(keys)
    flagged = [(key, found) for key in sorted(keys) if (found := _check_file(history, scope, key))]
    if flagged:
        details = history.record_details()
        report.problems += [
            _problem(scope, history, details, key, kind, current, third_party.get(key[0], False))
            for key, (kind, current) in flagged
        ]
    report.problems += _conflicts(loader, scope)
    report.problems += _inconsistencies(connection, loader, history, scope)
    if check_models is None:
        check_models = only is None
    if check_models:
        report.problems += _model_changes(loader, scope, third_party)
    report.problems.sort(key=lambda p: (KINDS.index(p.kind), p.app_label, p.migration))
    return report


def require_verified(
    connection: BaseDatabaseWrapper,
    loader: MigrationLoader,
    *,
    only: set[MigrationKey] | None = None,
    progress: ProgressCallback = ignore_progress,
) -> IntegrityReport:
    """Raise IntegrityViolation (exit 2) on any error; report warnings through ``progress``.

    Model changes without a migration are left to ``verifymigrations``: ``migrate`` does
    not refuse them either, and detecting them costs more than the rest of the check.
    """
    report = verify(connection, loader, only=only, check_models=False)
    for message in warning_summaries(report):
        progress(ProgressEvent("warning", message=message))
    if report.errors:
        raise IntegrityViolation(violation_message(report))
    return report


def violation_message(report: IntegrityReport) -> str:
    """One line per error, each naming the file, both hashes and the way out."""
    errors = report.errors
    lines = [
        f"Integrity check failed on {report.database!r}: {len(errors)} problem(s); "
        "nothing was changed."
    ]
    lines += [f"  {problem.line()}" for problem in errors]
    return "\n".join(lines)


def warning_summaries(report: IntegrityReport) -> list[str]:
    """Warnings in a few lines: unverified migrations are summed up, not listed one by one."""
    unverified = report.of_kind(UNVERIFIED)
    lines = [
        f"[{problem.check_id}] {problem.line()}"
        for problem in report.warnings
        if problem.kind != UNVERIFIED
    ]
    if unverified:
        lines.append(
            f"[{unverified[0].check_id}] {unverified_message(report.database, unverified)} "
            f"{baseline_hint(report.database)}"
        )
    return lines


def unverified_message(database: str, unverified: list[Problem]) -> str:
    """One sentence for many unverified migrations (a database adopted from plain migrate)."""
    names = ", ".join(problem.migration for problem in unverified[:3])
    more = f" and {len(unverified) - 3} more" if len(unverified) > 3 else ""
    return (
        f"{len(unverified)} applied migration(s) on {database!r} have no recorded hash "
        f"({names}{more}), so edits to them cannot be detected."
    )


def baseline_hint(database: str) -> str:
    return (
        f"Run 'python manage.py verifymigrations --baseline --database {database}' "
        "to record the current files."
    )


class _Scope:
    """Which migrations and apps a verification looks at, and how squashes relate."""

    def __init__(self, loader: MigrationLoader, only: set[MigrationKey] | None) -> None:
        self.loader = loader
        self.replaced_by: dict[MigrationKey, list[MigrationKey]] = {}
        self.spans: dict[str, list[tuple[int, int]]] = {}
        for key, migration in loader.replacements.items():
            for replaced in migration.replaces:
                self.replaced_by.setdefault(tuple(replaced), []).append(key)
            if key in loader.disk_migrations and any(
                tuple(r) not in loader.disk_migrations for r in migration.replaces
            ):
                span = _numbered_span(migration.replaces)
                if span is not None:
                    self.spans.setdefault(key[0], []).append(span)
        self.keys: set[MigrationKey] | None = None
        self.apps: set[str] | None = None
        if only is not None:
            self.keys = set(only)
            for key in only:
                self.keys.update(tuple(r) for r in self._replaces(key))
                self.keys.update(self.replaced_by.get(key, ()))
            self.apps = {app_label for app_label, _ in self.keys}

    def _replaces(self, key: MigrationKey) -> list[MigrationKey]:
        migration = self.loader.disk_migrations.get(key)
        return list(migration.replaces) if migration is not None else []

    def includes_app(self, app_label: str) -> bool:
        return self.apps is None or app_label in self.apps

    def applied_keys(self, history: _History) -> set[MigrationKey]:
        """Applied rows of installed apps, plus squashes whose replaced rows are all applied."""
        keys = set(history.applied)
        for key in self.loader.replacements:
            if compat.all_replaced_applied(self.loader, key, history.applied):
                keys.add(key)
        return {
            key
            for key in keys
            if key[0] in self.loader.migrated_apps and (self.keys is None or key in self.keys)
        }

    def covered(self, key: MigrationKey) -> bool:
        """A replaced migration whose squash is on disk: the squash stands for it. So does
        a squash of squashes (Django 6) for what the squashes it replaces, their files gone
        as Django advises, replaced: the migrations numbered within what it replaces."""
        if any(squash in self.loader.disk_migrations for squash in self.replaced_by.get(key, ())):
            return True
        number = _number(key[1])
        return number is not None and any(
            low <= number <= high for low, high in self.spans.get(key[0], ())
        )


def _number(name: str) -> int | None:
    """The number a migration's name starts with (a squash's is its first one's)."""
    digits = re.match(r"\d+", name)
    return int(digits.group()) if digits else None


def _numbered_span(replaces: Iterable[Iterable[str]]) -> tuple[int, int] | None:
    numbers = [_number(name) for _, name in replaces]
    if not numbers or None in numbers:
        return None
    return min(numbers), max(numbers)


def _check_file(history: _History, scope: _Scope, key: MigrationKey) -> tuple[str, str] | None:
    """(kind, current hash) when an applied migration's file is a problem, else None.

    The hot path of every safemigrate: plain strings and one read per file, no Path objects.
    """
    migration = scope.loader.disk_migrations.get(key)
    content = _read(_source(migration)) if migration is not None else None
    if content is None:
        return None if scope.covered(key) else (MISSING, "")
    recorded = history.hashes.get(key, "")
    algorithm = algorithm_of(recorded)
    if algorithm in ALGORITHMS:
        current = f"{algorithm}:{ALGORITHMS[algorithm](content)}"
        return None if current == recorded else (CHANGED, current)
    if _squash_verified(migration, history, scope, key):
        return None
    return UNVERIFIED, f"{HASH_ALGORITHM}:{ALGORITHMS[HASH_ALGORITHM](content)}"


def _source(migration: Migration) -> str | None:
    module = sys.modules.get(type(migration).__module__)
    return getattr(module, "__file__", None)


def _read(filename: str | None) -> bytes | None:
    if filename is None:
        return None
    try:
        with open(filename, "rb", buffering=0) as source:  # one read, no buffer copy
            return source.readall()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _problem(
    scope: _Scope,
    history: _History,
    details: dict[MigrationKey, tuple[datetime | None, int | None]],
    key: MigrationKey,
    kind: str,
    current: str,
    third_party: bool,
) -> Problem:
    recorded_at, run_id = details.get(key, (None, None))
    migration = scope.loader.disk_migrations.get(key)
    filename = _source(migration) if migration is not None else None
    found = {
        "app_label": key[0],
        "migration": migration_label(key),
        "path": _display_path(filename) if filename and kind != MISSING else "",
        "recorded_hash": history.hashes.get(key, ""),
        "applied_at": history.applied.get(key) or recorded_at,
        "run_id": run_id,
        "third_party": third_party,
    }
    if kind == MISSING:
        return _missing(found)
    if kind == CHANGED:
        return _changed(found, current)
    return _unverified(found, current, unknown=algorithm_of(found["recorded_hash"]))


def _squash_verified(
    migration: Migration, history: _History, scope: _Scope, key: MigrationKey
) -> bool:
    """A squash applied through hashed replaced files, or a file a hashed squash replaced."""
    if migration.replaces and all(tuple(r) in history.hashes for r in migration.replaces):
        return True
    return any(squash in history.hashes for squash in scope.replaced_by.get(key, ()))


def _when(found: dict[str, Any]) -> str:
    """' (applied 2025-01-31 09:00:00 UTC, hash recorded by run #3)', as far as known."""
    parts = []
    if found["applied_at"] is not None:
        parts.append(f"applied {found['applied_at']:%Y-%m-%d %H:%M:%S %Z}".rstrip())
    if found["run_id"] is not None:
        parts.append(f"hash recorded by run #{found['run_id']}")
    return f" ({', '.join(parts)})" if parts else ""


def _severity(found: dict[str, Any], kind: str) -> tuple[str, str]:
    if found["third_party"] and not get_settings().third_party_strict:
        return WARNING, THIRD_PARTY_ID
    return ERROR, CHECK_IDS[kind]


def _changed(found: dict[str, Any], current: str) -> Problem:
    label = found["migration"]
    severity, check_id = _severity(found, CHANGED)
    origin = " (third-party)" if found["third_party"] else ""
    return Problem(
        kind=CHANGED,
        severity=severity,
        check_id=check_id,
        current_hash=current,
        message=(
            f"{label} ({found['path']}){origin} changed after it was applied: "
            f"recorded {short(found['recorded_hash'])}, now {short(current)}{_when(found)}."
        ),
        hint=(
            f"{_restore(found)}, or accept the edit with "
            f"'python manage.py verifymigrations --accept {label} --reason \"...\"'."
        ),
        **found,
    )


def _restore(found: dict[str, Any]) -> str:
    """The way back to the file as applied: a package is reinstalled, not edited."""
    if found["third_party"]:
        return (
            f"Reinstall the package that ships {found['app_label']!r} "
            "(pip install --force-reinstall, at the version that was applied)"
        )
    return "Restore the file from version control"


def _missing(found: dict[str, Any]) -> Problem:
    label = found["migration"]
    severity, check_id = _severity(found, MISSING)
    return Problem(
        kind=MISSING,
        severity=severity,
        check_id=check_id,
        message=(
            f"{label} was applied{_when(found)} but its file is missing "
            "and no squash on disk replaces it."
        ),
        hint=(
            f"{_restore(found)}; if a release removed it, forget it with "
            f"'python manage.py safemigrate {found['app_label']} --prune'."
        ),
        **found,
    )


def _unverified(found: dict[str, Any], current: str, *, unknown: str = "") -> Problem:
    why = f"its hash uses unknown algorithm {unknown!r}" if unknown else "it has no recorded hash"
    return Problem(
        kind=UNVERIFIED,
        severity=WARNING,
        check_id=CHECK_IDS[UNVERIFIED],
        current_hash=current,
        message=f"{found['migration']} was applied{_when(found)} but {why}; edits go unnoticed.",
        hint="Run 'python manage.py verifymigrations --baseline' to record the current files.",
        **found,
    )


def _conflicts(loader: MigrationLoader, scope: _Scope) -> list[Problem]:
    problems = []
    for app_label, names in sorted(loader.detect_conflicts().items()):
        if not loader.replace_migrations:
            # A target inside a squashed range is planned, as migrate plans it, on a graph
            # without replacements: there a squash and what it replaces are both leaves.
            names = set(names) - {name for app, name in loader.replacements if app == app_label}
        if not scope.includes_app(app_label) or len(names) < 2:
            continue
        nodes = tuple(migration_label((app_label, name)) for name in sorted(names))
        problems.append(
            Problem(
                kind=CONFLICT,
                severity=ERROR,
                check_id=CHECK_IDS[CONFLICT],
                app_label=app_label,
                nodes=nodes,
                message=(
                    f"Conflicting migrations in {app_label!r}: several leaf nodes "
                    f"({', '.join(nodes)})."
                ),
                hint=f"Run 'python manage.py makemigrations --merge {app_label}'.",
            )
        )
    return problems


def _inconsistencies(
    connection: BaseDatabaseWrapper, loader: MigrationLoader, history: _History, scope: _Scope
) -> list[Problem]:
    """Every case Django's ``check_consistent_history`` raises on, not just the first."""
    problems = []
    applied = history.applied
    for key in sorted(applied):
        if key not in loader.graph.nodes or not scope.includes_app(key[0]):
            continue
        for parent in sorted(loader.graph.node_map[key].parents):
            parent = parent.key
            if parent in applied:
                continue
            if compat.all_replaced_applied(loader, parent, applied):
                continue
            problems.append(
                Problem(
                    kind=INCONSISTENT,
                    severity=ERROR,
                    check_id=CHECK_IDS[INCONSISTENT],
                    app_label=key[0],
                    migration=migration_label(key),
                    nodes=(migration_label(parent),),
                    message=(
                        f"{migration_label(key)} is applied before its dependency "
                        f"{migration_label(parent)} on {connection.alias!r}."
                    ),
                    hint=(
                        f"Apply {migration_label(parent)} (for example with "
                        f"'python manage.py safemigrate {parent[0]} {parent[1]} --fake' if its "
                        "changes are already in the schema), or unapply the dependants."
                    ),
                )
            )
    return problems


def _model_changes_hint(found: dict[str, Any]) -> str:
    """A package's migrations are not the project's to write (makemigrations would put one
    in site-packages)."""
    if found["third_party"]:
        return (
            f"Not the project's to migrate: upgrade or reinstall the package that ships "
            f"{found['app_label']!r} (changes to 'id' alone come from a DEFAULT_AUTO_FIELD "
            "other than its own); THIRD_PARTY_STRICT makes this an error."
        )
    return f"Run 'python manage.py makemigrations {found['app_label']}' and commit the result."


def _model_changes(
    loader: MigrationLoader, scope: _Scope, third_party: dict[str, bool]
) -> list[Problem]:
    """What ``makemigrations --check`` would find, one problem per app."""
    autodetector = MigrationAutodetector(
        loader.project_state(),
        ProjectState.from_apps(apps),
        MigrationQuestioner(specified_apps=set(), dry_run=True),
    )
    problems = []
    for app_label, migrations in sorted(autodetector.changes(graph=loader.graph).items()):
        if not scope.includes_app(app_label):
            continue
        found = {"app_label": app_label, "third_party": third_party.get(app_label, False)}
        severity, check_id = _severity(found, MODEL_CHANGES)
        operations = [op.describe() for migration in migrations for op in migration.operations]
        problems.append(
            Problem(
                kind=MODEL_CHANGES,
                severity=severity,
                check_id=check_id,
                message=(
                    f"Models in {app_label!r} have changes that no migration reflects: "
                    f"{'; '.join(operations)}."
                ),
                hint=_model_changes_hint(found),
                **found,
            )
        )
    return problems


def _display_path(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return filename


# Adopting and accepting -------------------------------------------------------------------

# Opens the run that records new hashes, given its details (the run pipeline's ``recorded``).
Recording: TypeAlias = Callable[[dict[str, Any]], AbstractContextManager[Run]]


@dataclass
class Recorded:
    """What ``--baseline`` or ``--accept`` recorded, and under which run."""

    run_id: int | None
    migrations: list[str]
    old_hash: str = ""
    new_hash: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "migrations": self.migrations,
            "old_hash": self.old_hash or None,
            "new_hash": self.new_hash or None,
            "reason": self.reason or None,
        }


def baseline(database: str, *, recording: Recording) -> Recorded:
    """Record the current hash of every applied migration that has none, as one audited run.

    Under the run lock, in the run ``recording(details)`` opens (``runner.baseline``).
    """
    connection = connections[database]
    loader = load(connection)
    history = _History.read(connection, loader)
    scope = _Scope(loader, None)
    pending: dict[MigrationKey, str] = {}
    for key in sorted(scope.applied_keys(history)):
        migration = loader.disk_migrations.get(key)
        if migration is not None and not history.hashes.get(key):
            checksum = migration_hash(migration)
            if checksum:
                pending[key] = checksum
    if not pending:
        return Recorded(run_id=None, migrations=[])
    labels = [migration_label(key) for key in pending]
    run = _record(
        connection,
        {key: (checksum, history.applied.get(key)) for key, checksum in pending.items()},
        recording=recording,
        details={"baseline": labels},
    )
    return Recorded(run_id=run.pk, migrations=labels)


def accept(database: str, label: str, *, reason: str, recording: Recording) -> Recorded:
    """Record the current hash of a deliberately edited applied migration, with the reason.

    Under the run lock, in the run ``recording(details)`` opens (``runner.accept``).
    """
    connection = connections[database]
    loader = load(connection)
    key = _resolve(loader, label)
    history = _History.read(connection, loader)
    if key not in _Scope(loader, None).applied_keys(history):
        raise UnknownTarget(
            f"{migration_label(key)} is not applied to {database!r}; nothing to accept."
        )
    checksum = migration_hash(loader.disk_migrations[key])
    if not checksum:
        raise InvalidRequest(
            f"{migration_label(key)} has no file to hash; restore it from version control."
        )
    old = history.hashes.get(key, "")
    if old == checksum:
        return Recorded(run_id=None, migrations=[], old_hash=old, new_hash=checksum)
    applied_at = history.applied.get(key)
    details = {
        "accepted": migration_label(key),
        "old_hash": old or None,
        "new_hash": checksum,
        "reason": reason,
    }
    run = _record(connection, {key: (checksum, applied_at)}, recording=recording, details=details)
    return Recorded(
        run_id=run.pk,
        migrations=[migration_label(key)],
        old_hash=old,
        new_hash=checksum,
        reason=reason,
    )


def _resolve(loader: MigrationLoader, label: str) -> MigrationKey:
    app_label, dot, name = label.partition(".")
    if not dot or not app_label or not name:
        raise InvalidRequest(f"Name the migration as app_label.migration_name, not {label!r}.")
    try:
        migration = loader.get_migration_by_prefix(app_label, name)
    except AmbiguityError:
        raise UnknownTarget(
            f"More than one migration of {app_label!r} matches {name!r}; give more of its name."
        ) from None
    except KeyError:
        raise UnknownTarget(
            f"No migration {label!r} on disk; give app_label.migration_name (or the start of "
            "the name) as 'showmigrations' lists it."
        ) from None
    return migration.app_label, migration.name


def _record(
    connection: BaseDatabaseWrapper,
    checksums: dict[MigrationKey, tuple[str, datetime | None]],
    *,
    recording: Recording,
    details: dict[str, Any],
) -> Run:
    with recording(details) as run, transaction.atomic(using=connection.alias):
        for (app_label, name), (checksum, applied_at) in checksums.items():
            defaults: dict[str, Any] = {"checksum": checksum, "run": run}
            if applied_at is not None:
                defaults["applied_at"] = applied_at
            MigrationHash.objects.using(connection.alias).update_or_create(
                app_label=app_label, name=name, defaults=defaults
            )
    return run
