"""Every failure migrator reports, each carrying the exit code the contract gives it."""

from typing import ClassVar, Final

# What a migration's own code may raise, all of it a failure of that migration: any error,
# or SystemExit from a helper that calls sys.exit (it would end the command, exit 0).
MIGRATION_CODE_ERRORS: Final = (Exception, SystemExit)


class MigratorError(Exception):
    """Base class: the message is one line that says what is wrong and what to do."""

    exit_code: ClassVar[int] = 1
    # Set on an error the audit recorded as the refusal of a run that never began
    # (``guard.record_refusal``): its outcome is ``refused`` wherever it is reported.
    refused: bool = False


class UnknownTarget(MigratorError):
    """An app label or migration name that the migration graph does not know."""


class InvalidRequest(MigratorError):
    """A request that cannot be carried out as asked (a backward plan for safemigrate, ...)."""


class UnappliedMigrations(MigratorError):
    """``--check``: migrations are waiting to be applied (exit 1, as ``migrate --check``)."""


class MisorderedStages(MigratorError):
    """A before_deploy migration that depends on a pending after_deploy one: the
    before-deploy stage holds it back, and the new code would start without it."""


class PooledConnection(MigratorError):
    """A connection through a transaction pooler (PgBouncer), where a session lock is void."""


class LockFileUnusable(MigratorError):
    """The lock file beside a SQLite database cannot be made (a directory this user cannot
    write); exit 1, as a database that cannot be used."""


class UnloadableMigration(MigratorError):
    """A migration file Django cannot import: a syntax error, a missing import, no class."""


class BrokenOperation(MigratorError):
    """A migration operation naming a model or field that the models before it lack (a typo)."""


class IntegrityViolation(MigratorError):
    """Applied history and the files on disk disagree (edited, missing, conflicting)."""

    exit_code = 2


class ConfirmationRequired(MigratorError):
    """A change that needs an explicit yes that was not given, or was refused."""

    exit_code = 3


class LockNotAcquired(MigratorError):
    """Another run held the database's migration lock for longer than the lock timeout."""

    exit_code = 4


class MigrationFailed(MigratorError):
    """A migration raised while applying or unapplying; its own transaction was rolled back."""

    exit_code = 5


class RunInterrupted(MigrationFailed):
    """The run was stopped by Ctrl-C or SIGTERM; the current migration was rolled back."""


class BackupFailed(MigratorError):
    """A backup or restore could not be completed; nothing was changed."""

    exit_code = 6


class PayloadDamaged(BackupFailed):
    """A backup whose payload is missing, or is not the one its manifest describes: nothing
    can restore it (a store that cannot be read just now is a BackupFailed only)."""


class RollbackRefused(MigratorError):
    """Validation refused a rollback (irreversible step, unknown target)."""

    exit_code = 7
