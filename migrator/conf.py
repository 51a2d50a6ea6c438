"""The one place that reads the ``MIGRATOR`` setting.

Every key, its default and its meaning:

=======================  ==================  ==================================================
key                      default             meaning
=======================  ==================  ==================================================
ENVIRONMENT              None                environment name; else ``MIGRATOR_ENV``, else
                                             ``production`` when ``DEBUG`` is false and
                                             ``development`` when it is true
CONFIRM_ENVIRONMENTS     ["production"]      environments where changes need ``--yes`` or a
                                             typed confirmation
BACKUP_BEFORE_MIGRATE    None                back up before ``safemigrate``; None: only in
                                             CONFIRM_ENVIRONMENTS
BACKUP_BEFORE_ROLLBACK   None                back up before ``rollback``; None: as above
BACKUP_DIR               BASE_DIR/backups    where backups go (else ./backups)
BACKUP_STORAGE           None                a ``STORAGES`` alias to use instead of BACKUP_DIR
BACKUP_KEEP              10                  backups per database ``backup --prune`` keeps
                                             when it is given no ``--keep``
PG_BIN_DIR               None                directory of ``pg_dump``/``pg_restore``; else PATH
PG_DUMP_COMPRESS         1                   ``pg_dump --compress`` level for native backups
RUN_LOCK_TIMEOUT         600                 seconds a run waits for another run's lock
PG_LOCK_TIMEOUT          5                   PostgreSQL ``lock_timeout`` per migration (s)
PG_STATEMENT_TIMEOUT     None                PostgreSQL ``statement_timeout`` per migration (s)
LOCK_RETRIES             3                   retries of an atomic migration on lock timeout
THIRD_PARTY_STRICT       False               integrity problems in site-packages are errors
BLOCKING_RISKS           []                  risk codes that stop a run unless acknowledged
BATCH_SIZE               1000                default batch size of batched data migrations
NOTIFY                   []                  dotted paths of callables and/or webhook URLs
NOTIFY_EVENTS            [failed, refused,   run events that are sent to NOTIFY
                         interrupted]
NOTIFY_TIMEOUT           5                   seconds a notification may take
=======================  ==================  ==================================================
"""

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "ENVIRONMENT": None,
    "CONFIRM_ENVIRONMENTS": ["production"],
    "BACKUP_BEFORE_MIGRATE": None,
    "BACKUP_BEFORE_ROLLBACK": None,
    "BACKUP_DIR": None,
    "BACKUP_STORAGE": None,
    "BACKUP_KEEP": 10,
    "PG_BIN_DIR": None,
    "PG_DUMP_COMPRESS": 1,
    "RUN_LOCK_TIMEOUT": 600.0,
    "PG_LOCK_TIMEOUT": 5.0,
    "PG_STATEMENT_TIMEOUT": None,
    "LOCK_RETRIES": 3,
    "THIRD_PARTY_STRICT": False,
    "BLOCKING_RISKS": [],
    "BATCH_SIZE": 1000,
    "NOTIFY": [],
    "NOTIFY_EVENTS": ["failed", "refused", "interrupted"],
    "NOTIFY_TIMEOUT": 5.0,
}


@dataclass(frozen=True, kw_only=True)
class MigratorSettings:
    environment: str
    confirm_environments: frozenset[str]
    backup_before_migrate: bool
    backup_before_rollback: bool
    backup_dir: Path
    backup_storage: str | None
    backup_keep: int
    pg_bin_dir: str | None
    pg_dump_compress: int
    run_lock_timeout: float
    pg_lock_timeout: float | None
    pg_statement_timeout: float | None
    lock_retries: int
    third_party_strict: bool
    blocking_risks: frozenset[str]
    batch_size: int
    notify: tuple[str, ...]
    notify_events: frozenset[str]
    notify_timeout: float

    @property
    def needs_confirmation(self) -> bool:
        """Whether changes in this environment need an explicit yes."""
        return self.environment in self.confirm_environments


@cache
def get_settings() -> MigratorSettings:
    """The ``MIGRATOR`` setting merged over the defaults, read once per settings change."""
    user = getattr(settings, "MIGRATOR", {})
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown MIGRATOR setting(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(DEFAULTS))}."
        )
    raw = {**DEFAULTS, **user}
    environment = (
        raw["ENVIRONMENT"]
        or os.environ.get("MIGRATOR_ENV")
        or ("development" if settings.DEBUG else "production")
    )
    confirm_environments = frozenset(raw["CONFIRM_ENVIRONMENTS"])
    in_confirm_environment = environment in confirm_environments
    return MigratorSettings(
        environment=environment,
        confirm_environments=confirm_environments,
        backup_before_migrate=_default(raw["BACKUP_BEFORE_MIGRATE"], in_confirm_environment),
        backup_before_rollback=_default(raw["BACKUP_BEFORE_ROLLBACK"], in_confirm_environment),
        backup_dir=Path(raw["BACKUP_DIR"] or _base_dir() / "backups"),
        backup_storage=raw["BACKUP_STORAGE"],
        backup_keep=int(raw["BACKUP_KEEP"]),
        pg_bin_dir=raw["PG_BIN_DIR"],
        pg_dump_compress=int(raw["PG_DUMP_COMPRESS"]),
        run_lock_timeout=float(raw["RUN_LOCK_TIMEOUT"]),
        pg_lock_timeout=_seconds(raw["PG_LOCK_TIMEOUT"]),
        pg_statement_timeout=_seconds(raw["PG_STATEMENT_TIMEOUT"]),
        lock_retries=int(raw["LOCK_RETRIES"]),
        third_party_strict=bool(raw["THIRD_PARTY_STRICT"]),
        blocking_risks=frozenset(raw["BLOCKING_RISKS"]),
        batch_size=int(raw["BATCH_SIZE"]),
        notify=tuple(raw["NOTIFY"]),
        notify_events=frozenset(raw["NOTIFY_EVENTS"]),
        notify_timeout=float(raw["NOTIFY_TIMEOUT"]),
    )


def _default(value: bool | None, fallback: bool) -> bool:
    return fallback if value is None else bool(value)


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _base_dir() -> Path:
    return Path(getattr(settings, "BASE_DIR", None) or Path.cwd())


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in {"MIGRATOR", "DEBUG", "BASE_DIR"}:
        get_settings.cache_clear()
