"""The one place that reads the ``MIGRATOR`` setting.

Every key, its default and its meaning:

=======================  ==================  ==================================================
key                      default             meaning
=======================  ==================  ==================================================
ENVIRONMENT              None                environment name (at most 40 characters);
                                             else ``MIGRATOR_ENV``, else ``production``
                                             when ``DEBUG`` is false and ``development``
                                             when it is true
CONFIRM_ENVIRONMENTS     ["production",      environments where changes need ``--yes`` or a
                         "prod", "prd",      typed confirmation
                         "live"]
BACKUP_BEFORE_MIGRATE    None                back up before ``safemigrate``; None: only in
                                             CONFIRM_ENVIRONMENTS
BACKUP_BEFORE_ROLLBACK   None                back up before ``rollback``; None: as above
BACKUP_DIR               BASE_DIR/backups    where backups go (else ./backups)
BACKUP_STORAGE           None                a ``STORAGES`` alias to use instead of BACKUP_DIR
BACKUP_KEEP              10                  backups per database ``backup --prune`` keeps
                                             when it is given no ``--keep``
BACKUP_RECIPIENTS        []                  age public keys (``age1...``), or the path of a
                                             recipients file: every backup is encrypted to them
BACKUP_IDENTITY_FILE     None                age identity file that decrypts backups (restore,
                                             drill); else ``MIGRATOR_BACKUP_IDENTITY_FILE``
PG_BIN_DIR               None                directory of ``pg_dump``/``pg_restore``; else PATH
PG_DUMP_COMPRESS         1                   ``pg_dump --compress`` level for native backups
RESTORE_JOBS             None                above 1: a native PostgreSQL restore runs
                                             ``pg_restore --jobs N`` into a new database
                                             and swaps it in by name, where it can; None:
                                             so with 2 jobs into a database that holds
                                             nothing yet; 1: always in one transaction
RUN_LOCK_TIMEOUT         600                 seconds a run waits for another run's lock
PG_LOCK_TIMEOUT          5                   ``lock_timeout`` per migration and restore (s)
PG_STATEMENT_TIMEOUT     None                PostgreSQL ``statement_timeout`` per migration (s)
LOCK_RETRIES             3                   retries of a migration (or restore) on lock timeout
THIRD_PARTY_STRICT       False               integrity problems in site-packages are errors
BLOCKING_RISKS           []                  risk codes that stop a run unless acknowledged
APP_RISKS                {}                  per app label, how its risk findings are shown:
                                             "warn" (graded; the default for the project's
                                             apps), "info" (the default for installed
                                             packages: listed by --plan and -v 2), "mute"
                                             (JSON only); data loss is always graded
BATCH_SIZE               1000                default batch size of batched data migrations
NOTIFY                   []                  dotted paths of callables and/or webhook URLs
NOTIFY_EVENTS            [failed, refused,   run events that are sent to NOTIFY
                         interrupted]
NOTIFY_TIMEOUT           5                   seconds a notification may take
STAGE_OVERRIDES          {}                  ``{"app_label.migration_name": "after_deploy"}``:
                                             the deploy stage of migrations you do not own
DIRECT_DATABASES         {}                  alias -> the alias (or database URL) migrator
                                             uses instead for its lock, DDL and backups (a
                                             direct connection when the app's goes through
                                             PgBouncer); a URL is the alias ``<alias>-direct``
=======================  ==================  ==================================================

An unknown key or a value of the wrong type is ``SettingsInvalid`` (exit 1, one line) when a
command reads the settings, and system check ``migrator.E010``/``E011`` in ``manage.py check``.
Environment names are compared case- and space-insensitively.
"""

import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from migrator.exceptions import MigratorError
from migrator.secrets import mask

UNKNOWN_KEY_ID: Final = "migrator.E010"
BAD_VALUE_ID: Final = "migrator.E011"
ENVIRONMENT_MAX_LENGTH: Final = 40  # the audit's column (migrator_run.environment)
DIRECT_SUFFIX: Final = "-direct"  # the alias of a DIRECT_DATABASES URL: "default-direct"
# The run events NOTIFY_EVENTS may name (``migrator.signals.EVENTS`` sends them).
NOTIFY_EVENTS: Final = (
    "started",
    "applied",
    "unapplied",
    "finished",
    "failed",
    "refused",
    "interrupted",
)
RISK_CODE: Final = re.compile(r"ML\d{3}")
DOTTED_PATH: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# What looks like the scheme (mistyped: ``https:/``, ``https//``) and host of a URL that
# is not one; credentials before an ``@`` are skipped.
MISTYPED_URL: Final = re.compile(r"(?P<scheme>https?[:/]+)?(?:[^/@]*@)?(?P<host>[^/:@]+)", re.I)
# Settings whose values errors do not repeat: webhook tokens, credentials in forms that
# masking cannot know (a URL without its scheme).
UNSHOWN: Final = {"NOTIFY", "DIRECT_DATABASES"}

DEFAULTS: dict[str, Any] = {
    "ENVIRONMENT": None,
    "CONFIRM_ENVIRONMENTS": ["production", "prod", "prd", "live"],
    "BACKUP_BEFORE_MIGRATE": None,
    "BACKUP_BEFORE_ROLLBACK": None,
    "BACKUP_DIR": None,
    "BACKUP_STORAGE": None,
    "BACKUP_KEEP": 10,
    "BACKUP_RECIPIENTS": [],
    "BACKUP_IDENTITY_FILE": None,
    "PG_BIN_DIR": None,
    "PG_DUMP_COMPRESS": 1,
    "RESTORE_JOBS": None,
    "RUN_LOCK_TIMEOUT": 600.0,
    "PG_LOCK_TIMEOUT": 5.0,
    "PG_STATEMENT_TIMEOUT": None,
    "LOCK_RETRIES": 3,
    "THIRD_PARTY_STRICT": False,
    "BLOCKING_RISKS": [],
    "APP_RISKS": {},
    "BATCH_SIZE": 1000,
    "NOTIFY": [],
    "NOTIFY_EVENTS": ["failed", "refused", "interrupted"],
    "NOTIFY_TIMEOUT": 5.0,
    "STAGE_OVERRIDES": {},
    "DIRECT_DATABASES": {},
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
    backup_recipients: tuple[str, ...] | str  # keys, or the path of a recipients file
    backup_identity_file: str | None
    pg_bin_dir: str | None
    pg_dump_compress: int
    restore_jobs: int | None
    run_lock_timeout: float
    pg_lock_timeout: float | None
    pg_statement_timeout: float | None
    lock_retries: int
    third_party_strict: bool
    blocking_risks: frozenset[str]
    app_risks: dict[str, str]  # app label -> warn | info | mute
    batch_size: int
    notify: tuple[str, ...]
    notify_events: frozenset[str]
    notify_timeout: float
    stage_overrides: Mapping[str, str]  # values of migrator.types.Stage
    direct_databases: dict[str, str]

    @property
    def needs_confirmation(self) -> bool:
        """Whether changes in this environment need an explicit yes."""
        return self.environment in self.confirm_environments


class SettingsInvalid(MigratorError, ImproperlyConfigured):
    """A ``MIGRATOR`` key migrator does not know, or a value of the wrong type (exit 1)."""


@dataclass(frozen=True)
class SettingProblem:
    """One thing wrong with ``MIGRATOR``; also reported by ``manage.py check``."""

    key: str | None  # None: MIGRATOR itself
    message: str
    check_id: str

    @property
    def hint(self) -> str:
        where = "MIGRATOR" if self.key is None else f"MIGRATOR[{self.key!r}]"
        return f"Fix {where} in your settings."

    def line(self) -> str:
        return f"{self.message} {self.hint}"


def normalize_environment(name: str) -> str:
    """Environment names are compared case- and space-insensitively: ' Production' is
    production, and so is one with an invisible character pasted in (a zero-width space)."""
    visible = "".join(c for c in str(name) if unicodedata.category(c) != "Cf")
    return " ".join(visible.split()).lower()


def _environment_name(value: Any) -> str | None:
    """An environment name, normalised; None when unset. The audit records it whole, so a
    name longer than its column is refused rather than cut (or, on PostgreSQL, failing
    the run's first write)."""
    name = normalize_environment(_text(value) or "")
    if len(name) > ENVIRONMENT_MAX_LENGTH:
        raise ValueError(
            f"an environment name has at most {ENVIRONMENT_MAX_LENGTH} characters, "
            f"this one {len(name)}"
        )
    return name or None


def _environment_variable() -> str | None:
    """``MIGRATOR_ENV``, checked as ``MIGRATOR["ENVIRONMENT"]`` is."""
    try:
        return _environment_name(os.environ.get("MIGRATOR_ENV"))
    except ValueError as exc:
        raise SettingsInvalid(
            f"MIGRATOR_ENV is {os.environ['MIGRATOR_ENV']!r}: {exc}. Shorten it."
        ) from None


def settings_problems() -> list[SettingProblem]:
    """Every unknown key and badly typed value in ``MIGRATOR``; empty when all is well."""
    user = getattr(settings, "MIGRATOR", {})
    if not isinstance(user, Mapping):
        return [SettingProblem(None, "MIGRATOR must be a dict.", BAD_VALUE_ID)]
    problems = [
        SettingProblem(
            str(key),
            f"Unknown MIGRATOR key {key!r}; known keys are {', '.join(sorted(DEFAULTS))}.",
            UNKNOWN_KEY_ID,
        )
        for key in sorted(set(user) - set(DEFAULTS), key=str)
    ]
    for key, value in user.items():
        if key in CONVERTERS:
            try:
                CONVERTERS[key](value)
            except (TypeError, ValueError) as exc:
                shown = ":" if key in UNSHOWN else f" is {value!r}:"
                problems.append(
                    SettingProblem(key, mask(f"MIGRATOR[{key!r}]{shown} {exc}."), BAD_VALUE_ID)
                )
    return problems


@cache
def get_settings() -> MigratorSettings:
    """The ``MIGRATOR`` setting merged over the defaults, read once per settings change.

    Raises SettingsInvalid (exit 1, one line) naming the first unknown key or bad value.
    """
    problems = settings_problems()
    if problems:
        raise SettingsInvalid(problems[0].line())
    raw = {**DEFAULTS, **getattr(settings, "MIGRATOR", {})}
    value = {key: CONVERTERS[key](raw[key]) if key in CONVERTERS else raw[key] for key in raw}
    environment = (
        value["ENVIRONMENT"]
        or _environment_variable()
        or ("development" if settings.DEBUG else "production")
    )
    confirm_environments = value["CONFIRM_ENVIRONMENTS"]
    in_confirm_environment = environment in confirm_environments
    return MigratorSettings(
        environment=environment,
        confirm_environments=confirm_environments,
        backup_before_migrate=_default(value["BACKUP_BEFORE_MIGRATE"], in_confirm_environment),
        backup_before_rollback=_default(value["BACKUP_BEFORE_ROLLBACK"], in_confirm_environment),
        backup_dir=Path(value["BACKUP_DIR"] or _base_dir() / "backups"),
        backup_storage=value["BACKUP_STORAGE"],
        backup_keep=value["BACKUP_KEEP"],
        backup_recipients=value["BACKUP_RECIPIENTS"],
        backup_identity_file=(
            value["BACKUP_IDENTITY_FILE"] or _text(os.environ.get("MIGRATOR_BACKUP_IDENTITY_FILE"))
        ),
        pg_bin_dir=value["PG_BIN_DIR"],
        pg_dump_compress=value["PG_DUMP_COMPRESS"],
        restore_jobs=value["RESTORE_JOBS"],
        run_lock_timeout=value["RUN_LOCK_TIMEOUT"],
        pg_lock_timeout=value["PG_LOCK_TIMEOUT"],
        pg_statement_timeout=value["PG_STATEMENT_TIMEOUT"],
        lock_retries=value["LOCK_RETRIES"],
        third_party_strict=value["THIRD_PARTY_STRICT"],
        blocking_risks=frozenset(value["BLOCKING_RISKS"]),
        app_risks=value["APP_RISKS"],
        batch_size=value["BATCH_SIZE"],
        notify=value["NOTIFY"],
        notify_events=frozenset(value["NOTIFY_EVENTS"]),
        notify_timeout=value["NOTIFY_TIMEOUT"],
        stage_overrides=value["STAGE_OVERRIDES"],
        direct_databases=value["DIRECT_DATABASES"],
    )


def direct_alias(database: str) -> str:
    """The alias migrator works through for ``database``: ``DIRECT_DATABASES``' or itself.

    A URL there becomes the connection ``<database>-direct``, added to Django's
    connections (replaced, its old connection closed, when the URL changes).
    """
    direct = get_settings().direct_databases.get(database, database)
    if not _is_url(direct):
        return direct
    from django.db import DEFAULT_DB_ALIAS, connections

    alias = f"{database}{DIRECT_SUFFIX}"
    wanted = _parse_url(direct)
    known = connections.settings.get(alias)
    if known is None or not _same_database(known, wanted):
        if known is not None:
            connections[alias].close()
            del connections[alias]
        configured = connections.configure_settings({DEFAULT_DB_ALIAS: {}, alias: wanted})
        connections.settings[alias] = configured[alias]
    return alias


def _is_url(value: str) -> bool:
    return "://" in value


def _same_database(known: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a DATABASES entry is the one ``direct_alias`` makes of a parsed URL."""
    return all(known.get(key) == value for key, value in wanted.items())


def _default(value: bool | None, fallback: bool) -> bool:
    return fallback if value is None else value


def seconds(value: Any) -> float:
    """A number of seconds: finite and 0 or more (``--lock-timeout``, the timeouts)."""
    if isinstance(value, bool):
        raise TypeError("must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number of seconds, 0 or more")
    return number


PG_TIMEOUT_MAX: Final = (2**31 - 1) / 1000  # lock_timeout, statement_timeout: int ms


def _pg_timeout(value: Any) -> float:
    """PG_LOCK_TIMEOUT, PG_STATEMENT_TIMEOUT: seconds that PostgreSQL accepts (ms, an int)."""
    number = seconds(value)
    if number > PG_TIMEOUT_MAX:
        raise ValueError(f"must be at most {PG_TIMEOUT_MAX:.10g} seconds (PostgreSQL's limit)")
    return number


def _count(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise TypeError("must be a whole number")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("must be a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise ValueError(f"must be {bounds}")
        return number

    return convert


def _storage_alias(value: Any) -> str | None:
    """``BACKUP_STORAGE``: an alias of ``STORAGES``, or unset."""
    alias = _text(value)
    if alias is not None:
        from django.core.files.storage import storages

        if alias not in storages.backends:
            raise ValueError(f"{alias!r} is not in STORAGES ({', '.join(storages.backends)})")
    return alias


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be True or False")
    return value


def _text(value: Any) -> str | None:
    """A string or a path; None or blank means unset (the default applies)."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise TypeError("must be a string")
    return str(value) if str(value).strip() else None


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError("must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError("must be a list of strings")
    return items


def _risk_codes(value: Any) -> tuple[str, ...]:
    """``BLOCKING_RISKS``: codes as findings spell them (``ML201``): a misspelt one would
    turn the gate off without a word. ``manage.py check`` also names codes no risk has."""
    codes = _names(value)
    misspelt = [code for code in codes if not RISK_CODE.fullmatch(code)]
    if misspelt:
        raise ValueError(
            f"has {', '.join(map(repr, misspelt))}, which no finding's code can be: a code is "
            "ML and three digits (ML201), as docs/risks.md lists them"
        )
    return codes


def _receivers(value: Any) -> tuple[str, ...]:
    """``NOTIFY``: ``http(s)://`` webhook URLs and dotted paths of callables. A URL is never
    shown whole in an error: its path may hold a token."""
    receivers = _names(value)
    for entry in receivers:
        if "://" in entry:
            parts = urlsplit(entry)
            shown = f"{parts.scheme}://{parts.hostname or ''}/..."
            try:
                parts.port  # noqa: B018  (raises ValueError on a port that is no number)
            except ValueError:
                raise ValueError(f"a webhook URL has a bad port ({shown})") from None
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"a webhook URL is not http(s)://host/... ({shown})")
        elif not DOTTED_PATH.fullmatch(entry):
            raise ValueError(
                f"{_mistyped_receiver(entry)} is neither an http(s):// webhook URL nor the "
                "dotted path of a callable"
            )
    return receivers


def _mistyped_receiver(entry: str) -> str:
    """A NOTIFY entry that is neither, as an error may show it: whole when it cannot be a
    URL (a dotted path's typo), else up to its host only (``https:/host/...``): a mistyped
    webhook URL's path holds its token, and what is before an ``@`` a password."""
    if not any(mark in entry for mark in "/:@"):
        return repr(entry)
    match = MISTYPED_URL.match(entry)
    return repr(f"{match['scheme'] or ''}{match['host']}/...") if match else "an entry"


def _events(value: Any) -> tuple[str, ...]:
    """``NOTIFY_EVENTS``: names of run events (a misspelt one would silence its alerts)."""
    events = _names(value)
    unknown = [event for event in events if event not in NOTIFY_EVENTS]
    if unknown:
        raise ValueError(
            f"has unknown event(s) {', '.join(map(repr, unknown))}; the events are "
            f"{', '.join(NOTIFY_EVENTS)}"
        )
    return events


def _direct_databases(value: Any) -> dict[str, str]:
    """``DIRECT_DATABASES``: database aliases to an alias in ``DATABASES`` or a database URL."""
    if not isinstance(value, Mapping):
        raise TypeError("must be a dict of database aliases to aliases or URLs")
    for alias, direct in value.items():
        if not isinstance(alias, str) or not isinstance(direct, str):
            raise TypeError("must be a dict of database aliases to aliases or URLs")
        if alias not in settings.DATABASES:
            raise ValueError(
                f"its key {alias!r} is not in DATABASES (keys are the aliases the app uses)"
            )
        target = _direct_target(alias, direct)
        vendor, direct_vendor = _vendor(settings.DATABASES[alias]), _vendor(target)
        if vendor != direct_vendor:  # it would migrate, lock and back up another database
            raise ValueError(
                f"{alias!r} is a {vendor} database and its direct connection a {direct_vendor} "
                "one; both must reach the same database"
            )
    return dict(value)


def _direct_target(alias: str, direct: str) -> Mapping[str, Any]:
    """The DATABASES entry a DIRECT_DATABASES value names, or the one its URL makes."""
    if not _is_url(direct):
        if direct in settings.DATABASES:
            return settings.DATABASES[direct]
        if "@" in direct or ":" in direct:  # a URL without its scheme: not to be shown
            raise ValueError(
                f"the value for {alias!r} is neither an alias of DATABASES nor a database URL "
                "(scheme://host:port/name, credentials before the host)"
            )
        raise ValueError(f"{direct!r} is not in DATABASES")
    try:
        wanted = _parse_url(direct)
    except ImportError:
        raise ValueError(
            f"the URL for {alias!r} needs dj-database-url, which is not installed; install "
            "it (pip install 'django-migrator[postgres]'), or name an alias of DATABASES"
        ) from None
    except Exception as exc:  # UnknownSchemeError, a bad port, ...: what it says
        raise ValueError(
            f"the URL for {alias!r} is not one dj-database-url reads ({_first_sentence(exc)})"
        ) from None
    if not wanted.get("NAME"):
        raise ValueError(f"the URL for {alias!r} names no database (.../name at its end)")
    known = settings.DATABASES.get(alias + DIRECT_SUFFIX)
    if known is not None and not _same_database(known, wanted):  # not one direct_alias added
        raise ValueError(
            f"the URL for {alias!r} would be the alias {alias + DIRECT_SUFFIX!r}, "
            "which DATABASES already has"
        )
    return wanted


def _parse_url(url: str) -> dict[str, Any]:
    """A DATABASES entry from a URL; dj-database-url is only needed where one is given."""
    import dj_database_url

    return dict(dj_database_url.parse(url))


def _vendor(database: Mapping[str, Any]) -> str:
    """PostgreSQL or SQLite (their GIS engines included), else the engine as written."""
    engine = str(database.get("ENGINE", ""))
    if "postg" in engine:
        return "PostgreSQL"
    if "sqlite" in engine or "spatialite" in engine:
        return "SQLite"
    return engine


def _first_sentence(exc: Exception) -> str:
    return str(exc).split(". ")[0].rstrip(".")


def _recipients(value: Any) -> tuple[str, ...] | str:
    """age public keys, or the path of a recipients file (one key per line)."""
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    return tuple(key.strip() for key in _names(value) if key.strip())


def _environments(value: Any) -> frozenset[str]:
    return frozenset(normalize_environment(name) for name in _names(value))


def _stages(value: Any) -> Mapping[str, str]:
    """``{"app_label.migration_name": "after_deploy"}``, each stage checked."""
    if not isinstance(value, Mapping):
        raise TypeError('must be a dict like {"app_label.migration_name": "after_deploy"}')
    for label, stage in value.items():
        if stage not in STAGES:
            raise ValueError(f"the stage of {label!r} must be one of {', '.join(STAGES)}")
    return {str(label): str(stage) for label, stage in value.items()}


STAGES: Final = ("before_deploy", "after_deploy")  # migrator.types.Stage (which imports conf)


APP_RISK_LEVELS: Final = ("warn", "info", "mute")


def _app_risks(value: Any) -> dict[str, str]:
    """``{"app_label": "warn" | "info" | "mute"}``."""
    if not isinstance(value, Mapping):
        raise TypeError(f"must be a dict of app label to {' | '.join(APP_RISK_LEVELS)}")
    for app_label, level in value.items():
        if level not in APP_RISK_LEVELS:
            raise ValueError(f"{app_label!r} must be one of {', '.join(APP_RISK_LEVELS)}")
    return dict(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "DIRECT_DATABASES": _direct_databases,
    "ENVIRONMENT": _environment_name,
    "CONFIRM_ENVIRONMENTS": _environments,
    "BACKUP_BEFORE_MIGRATE": _optional(_flag),
    "BACKUP_BEFORE_ROLLBACK": _optional(_flag),
    "BACKUP_DIR": _text,
    "BACKUP_STORAGE": _storage_alias,
    "BACKUP_KEEP": _count(0),
    "BACKUP_RECIPIENTS": _recipients,
    "BACKUP_IDENTITY_FILE": _text,
    "PG_BIN_DIR": _text,
    "PG_DUMP_COMPRESS": _count(0, 9),
    "RESTORE_JOBS": _optional(_count(1, 64)),
    "RUN_LOCK_TIMEOUT": seconds,
    "PG_LOCK_TIMEOUT": _optional(_pg_timeout),
    "PG_STATEMENT_TIMEOUT": _optional(_pg_timeout),
    "LOCK_RETRIES": _count(0),
    "THIRD_PARTY_STRICT": _flag,
    "BLOCKING_RISKS": _risk_codes,
    "APP_RISKS": _app_risks,
    "BATCH_SIZE": _count(1),
    "NOTIFY": _receivers,
    "NOTIFY_EVENTS": _events,
    "NOTIFY_TIMEOUT": seconds,
    "STAGE_OVERRIDES": _stages,
}


def _base_dir() -> Path:
    return Path(getattr(settings, "BASE_DIR", None) or Path.cwd())


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in {"MIGRATOR", "DEBUG", "BASE_DIR"}:
        get_settings.cache_clear()
