"""System checks: bad settings, mixed deploy stages, ``--database`` integrity problems.

The check is tagged ``database`` and reads only the aliases it is given, so a plain
``manage.py check`` (no ``--database``) never touches a database. migrator's own commands
verify integrity themselves, with exit code 2 and a fuller report, so they run the other
checks inside ``integrity_checks_deferred()``.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.util import find_spec
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from migrator import conf, integrity, packages, stages
from migrator.backup.encryption import INSTALL_HINT
from migrator.exceptions import BrokenOperation, IntegrityViolation, MigratorError
from migrator.risks.catalogue import RISKS

LOAD_ID = "migrator.E007"

_deferred: ContextVar[bool] = ContextVar("migrator_integrity_checks_deferred", default=False)


@contextmanager
def integrity_checks_deferred() -> Iterator[None]:
    """Skip the integrity check meanwhile: the running command verifies integrity itself."""
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)


def check_settings(
    app_configs: Iterable[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """migrator.E010 (unknown MIGRATOR key), migrator.E011 (a value of the wrong type)."""
    return [
        Error(problem.message, hint=problem.hint, id=problem.check_id)
        for problem in conf.settings_problems()
    ]


def check_migration_integrity(
    app_configs: Iterable[AppConfig] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """migrator.E001-E004, W001-W002 for each database asked about."""
    if _deferred.get() or not databases:
        return []
    labels = None if app_configs is None else {config.label for config in app_configs}
    messages: list[CheckMessage] = []
    for alias in databases:
        connection = connections[alias]
        try:
            loader = integrity.load(connection)
        except MigratorError:  # files that cannot be loaded: check_deploy_stages says why
            continue
        report = integrity.verify(connection, loader, check_models=False)
        problems = [p for p in report.problems if labels is None or p.app_label in labels]
        messages += _messages(alias, problems)
    return messages


def _messages(alias: str, problems: list[integrity.Problem]) -> list[CheckMessage]:
    unverified = [p for p in problems if p.kind == integrity.UNVERIFIED]
    messages: list[CheckMessage] = [
        (Error if problem.is_error else Warning)(
            f"{problem.message} (database {alias!r})", hint=problem.hint, id=problem.check_id
        )
        for problem in problems
        if problem.kind != integrity.UNVERIFIED
    ]
    if unverified:  # one message per database, not one per migration of a whole project
        messages.append(
            Warning(
                integrity.unverified_message(alias, unverified),
                hint=integrity.baseline_hint(alias),
                id=integrity.CHECK_IDS[integrity.UNVERIFIED],
            )
        )
    return messages


def check_deploy_stages(
    app_configs: Iterable[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """migrator.E006: a migration whose operations need both deploy stages; migrator.W003:
    a STAGE_OVERRIDES entry that names no migration; migrator.E002/E007: migration files
    that cannot be loaded (a dependency's file gone; a file that does not import; an
    operation naming a field or model that the models before it do not have).

    Reads migration files only (no database), so a plain ``manage.py check`` in CI finds
    it before a deploy does. migrator's commands skip it (they report each migration's
    stage themselves) rather than load every migration a second time. Installed packages'
    migrations are left out: their authors, not the project, can split them, and an error
    here would stop ``runserver``; ``safemigrate --stage`` still holds them back.
    """
    if _deferred.get() or conf.settings_problems():  # bad settings: E010/E011 say so
        return []
    labels = None if app_configs is None else {config.label for config in app_configs}
    try:
        with integrity.graph_errors():
            loader = MigrationLoader(None, ignore_no_migrations=True)
    except MigratorError as exc:  # as migrate would fail: a check, not a traceback
        missing = isinstance(exc, IntegrityViolation)
        return [Error(str(exc), id=integrity.CHECK_IDS[integrity.MISSING] if missing else LOAD_ID)]
    third_party = packages.third_party_apps(loader)
    try:
        decisions = stages.mixed_migrations(loader)
    except MigratorError as exc:  # a stage = value that is no stage, a misspelt field
        check_id = LOAD_ID if isinstance(exc, BrokenOperation) else stages.CHECK_ID
        return [*_unknown_stage_overrides(loader), Error(str(exc), id=check_id)]
    mixed = [
        Error(
            f"Migration {decision.label} mixes deploy stages: {'; '.join(decision.mixed)}.",
            hint=(
                "Split it: the before_deploy operations in one migration, the after_deploy ones "
                "in a later one; or mark it with stage = Stage.AFTER_DEPLOY (or BEFORE_DEPLOY, "
                "from migrator.stages) or MIGRATOR['STAGE_OVERRIDES']."
            ),
            id=stages.CHECK_ID,
        )
        for decision in decisions
        if not third_party.get(app_label := decision.label.split(".", 1)[0])
        and (labels is None or app_label in labels)
    ]
    return [*_unknown_stage_overrides(loader), *mixed]


def _unknown_stage_overrides(loader: MigrationLoader) -> list[CheckMessage]:
    """migrator.W003: an override of no migration (a typo) would hold nothing back."""
    on_disk = {f"{app_label}.{name}" for app_label, name in loader.disk_migrations}
    return [
        Warning(
            f"MIGRATOR['STAGE_OVERRIDES'] names {label!r}, which is no migration on disk: "
            "it overrides nothing.",
            hint="Give the full name (app_label.migration_name, as showmigrations lists it), "
            "or remove the entry.",
            id="migrator.W003",
        )
        for label in conf.get_settings().stage_overrides
        if label not in on_disk
    ]


def check_blocking_risks(
    app_configs: Iterable[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """migrator.E011: a ``BLOCKING_RISKS`` code that no risk has (``ML999``): the gate it
    was meant to close stays open. A code that is not even spelt as one is refused with
    the settings (conf)."""
    try:
        codes = conf.get_settings().blocking_risks
    except conf.SettingsInvalid:  # check_settings reports it
        return []
    unknown = sorted(codes - RISKS.keys())
    if not unknown:
        return []
    return [
        Error(
            f"MIGRATOR['BLOCKING_RISKS'] has {', '.join(map(repr, unknown))}, which no risk "
            "finding has: the gate it names never closes.",
            hint=f"Use the codes docs/risks.md lists: {', '.join(sorted(RISKS))}.",
            id=conf.BAD_VALUE_ID,
        )
    ]


def check_backup_encryption(
    app_configs: Iterable[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """migrator.E015: recipients are configured but pyrage, which encrypts, is missing."""
    try:
        recipients = conf.get_settings().backup_recipients
    except conf.SettingsInvalid:  # check_settings reports it
        return []
    if not recipients or _importable("pyrage"):
        return []
    return [
        Error(
            "MIGRATOR['BACKUP_RECIPIENTS'] is set, but pyrage, which encrypts backups, is not "
            "installed: every backup would fail.",
            hint=INSTALL_HINT,
            id="migrator.E015",
        )
    ]


def _importable(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except ValueError:  # sys.modules[name] is None: imports of it fail
        return False
