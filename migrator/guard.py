"""The production guard: no change to a guarded environment without an explicit yes.

The environment comes from ``MIGRATOR["ENVIRONMENT"]``, else ``MIGRATOR_ENV``, else
``production`` when ``DEBUG`` is false (see ``conf.get_settings``); the environments that
need confirmation are ``MIGRATOR["CONFIRM_ENVIRONMENTS"]`` (default: production and its
usual short names: prod, prd, live). There a
change needs ``--yes`` or the database's name typed on a terminal, and a change that
destroys data also needs ``--allow-data-loss`` when nobody types. Elsewhere nothing is
asked: commands show the same findings as warnings. Every refusal is recorded in the
audit (a ``Run`` with outcome ``refused``), so ``migrationhistory`` shows who was stopped.
"""

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from migrator import audit
from migrator.conf import get_settings
from migrator.exceptions import ConfirmationRequired, MigratorError
from migrator.models import Run
from migrator.risks import LabelledFinding, plan_findings
from migrator.types import MIGRATOR_APP, ConfirmCallback

logger = logging.getLogger(__name__)


def confirmation_word(connection: BaseDatabaseWrapper) -> str:
    """What the operator types to confirm: the database's name (a SQLite file's name)."""
    name = str(connection.settings_dict["NAME"])
    return Path(name).name if connection.vendor == "sqlite" else name


def goes_ahead_unasked(*, assume_yes: bool) -> bool:
    """Whether ``require_confirmation`` returns without asking or refusing (no data loss)."""
    return assume_yes or not get_settings().needs_confirmation


def require_confirmation(
    connection: BaseDatabaseWrapper,
    *,
    question: str,
    assume_yes: bool,
    confirm: ConfirmCallback | None,
    data_loss: Iterable[LabelledFinding] = (),
    allow_data_loss: bool = False,
    command: str = "safemigrate",
    arguments: Mapping[str, Any] | None = None,
) -> None:
    """Return when the change may go ahead; record the refusal and raise (exit 3) otherwise.

    ``confirm`` is None when nobody can be asked (``--noinput``, no terminal): a guarded
    environment then refuses at once instead of waiting for input that cannot come.
    ``data_loss`` are the findings (with table, column, rows) of steps that destroy
    data: without a typed confirmation they need ``allow_data_loss`` too. The caller
    shows the plan and its risks before calling, so a prompt comes after them.
    """
    if not get_settings().needs_confirmation:
        return
    losses = list(data_loss)
    lost = "; ".join(item.finding.describe_loss() for item in losses)
    refusal = _Refusal(connection, command, arguments, question, losses)
    if confirm is None or assume_yes:
        if not assume_yes:
            refusal.refuse(f"{question} No terminal to ask on; pass --yes to confirm.")
        if losses and not allow_data_loss:
            refusal.refuse(
                f"{question} It destroys data: {lost}. Pass --allow-data-loss as well as "
                "--yes to go ahead; nothing was changed."
            )
        return
    asked = f"{question} It destroys data: {lost}." if losses else question
    if not confirm(asked, confirmation_word(connection)):
        refusal.refuse("Cancelled; nothing was changed.")


def refuse_blocking_risks(
    connection: BaseDatabaseWrapper,
    plan: Iterable[Any],
    *,
    command: str = "safemigrate",
    arguments: Mapping[str, Any] | None = None,
    record: bool = True,
) -> None:
    """Exit 3 when the plan has findings in ``MIGRATOR["BLOCKING_RISKS"]`` not acknowledged.

    Applies in every environment, so that a CI job running ``safemigrate --plan`` can
    gate merges (``record=False`` there: nothing was asked to change).
    """
    blocking = get_settings().blocking_risks
    blocked = [
        item
        for item in plan_findings(plan)
        if item.finding.code in blocking and not item.finding.acknowledged
        if not item.finding.muted and not _migrators_own(item)
    ]
    if not blocked:
        return
    listed = "; ".join(
        f"{item.finding.code} in {item.migration} ({item.finding.message})" for item in blocked
    )
    message = f"Blocked by MIGRATOR['BLOCKING_RISKS']: {listed}. {_unblocking(blocked)}"
    refusal = _Refusal(connection, command, arguments, "blocking risks", [])
    if record:
        refusal.refuse(message)
    raise ConfirmationRequired(message)


def _migrators_own(item: LabelledFinding) -> bool:
    """A finding of migrator's own migrations, which no block may hold back: every run
    applies them first, before any of the project's, and no project can change them."""
    return (item.migration or "").partition(".")[0] == MIGRATOR_APP


def _unblocking(blocked: list[LabelledFinding]) -> str:
    """How to lift a block: edit your own migration; never a file of an installed package."""
    packages = sorted(
        {str(item.migration).split(".")[0] for item in blocked if item.finding.origin == "package"}
    )
    advice = []
    if any(item.finding.origin != "package" for item in blocked):
        advice.append(
            "Make the migration safe, or acknowledge the code on its Migration class "
            '(migrator_acknowledge = {"CODE": "reason"})'
        )
    if packages:
        muted = ", ".join(f"{app!r}: 'mute'" for app in packages)
        advice.append(
            f"{', '.join(packages)}: installed package(s), not yours to edit; once reviewed, "
            f"set MIGRATOR['APP_RISKS'] = {{{muted}}}"
        )
    return "; ".join(advice) + "; nothing was changed."


class _Refusal:
    """Records a refusal in the audit, then raises ConfirmationRequired."""

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        command: str,
        arguments: Mapping[str, Any] | None,
        question: str,
        data_loss: list[LabelledFinding],
    ) -> None:
        self.connection = connection
        self.command = command
        self.arguments = dict(arguments or {})
        self.question = question
        self.data_loss = data_loss

    def refuse(self, message: str) -> None:
        record_refusal(
            self.connection,
            command=self.command,
            arguments=self.arguments,
            error=message,
            details={
                "question": self.question,
                "data_loss": [item.finding.describe_loss() for item in self.data_loss],
            },
        )
        raise ConfirmationRequired(message)


def record_refusal(
    connection: BaseDatabaseWrapper,
    *,
    command: str,
    arguments: Mapping[str, Any],
    error: str | MigratorError,
    details: Mapping[str, Any] | None = None,
) -> Run | None:
    """A ``refused`` run in the audit; None when migrator's tables do not exist yet.

    An ``error`` given as the exception about to be raised is marked refused, so that the
    command reports the outcome the audit holds (``--json``), not ``failed``.

    On a database that migrator never touched there is no audit table, and creating one
    would be a change nobody confirmed: the refusal is then only logged.
    """
    if isinstance(error, MigratorError):
        error.refused = True
        error = str(error)
    try:
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        if Run._meta.db_table not in tables:
            logger.warning(
                "Refused %s on %r (no audit table yet): %s", command, connection.alias, error
            )
            return None
        with audit.recorded(
            connection, command=command, arguments=arguments, details=details, refusal=error
        ) as run:
            return run
    except DatabaseError:
        logger.exception("Could not record the refusal of %s on %r.", command, connection.alias)
        return None
