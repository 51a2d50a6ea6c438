"""The production guard, through ``safemigrate`` as deploy scripts and operators run it.

The demo ledger is migrated up to 0003 and given rows; what is pending then is
0004 (a RemoveField: data loss) and 0005 (an irreversible RunPython). Production refuses
without --yes (at once, off a terminal), refuses data loss without --allow-data-loss,
and on a real pseudo-terminal asks for the database's name after showing the risks.
"""

import fcntl
import json
import os
import select
import subprocess
import termios
import time

import pytest
from django.db import connections
from django.utils import timezone

from migrator import guard
from migrator.exceptions import ConfirmationRequired
from migrator.models import Run
from migrator.risks import Finding, LabelledFinding
from tests.utils import (
    ROOT,
    TTYInput,
    applied,
    child_env,
    django_admin,
    run_command,
    start_child,
    table_columns,
)

BEFORE = "0003_backfill_email"
LOSS = "column memo of ledger_entry (3 rows)"


def ledger_with_rows(alias: str) -> None:
    """The ledger migrated to 0003 (migrator's own tables too), with 3 entries holding memos."""
    _, err, code = run_command("safemigrate", "ledger", "0003", "--yes", database=alias)
    assert code == 0, err
    with connections[alias].cursor() as cursor:
        cursor.execute("INSERT INTO ledger_account (name) VALUES ('Acme')")
        cursor.execute("SELECT id FROM ledger_account")
        account = cursor.fetchone()[0]
        for amount in (1, 2, 3):
            cursor.execute(
                "INSERT INTO ledger_entry (account_id, amount, memo, created, email) "
                "VALUES (%s, %s, %s, %s, '')",
                [account, amount, f"memo {amount}", timezone.now()],
            )


def refusals(alias: str) -> list[Run]:
    return list(Run.objects.using(alias).filter(outcome="refused").order_by("id"))


@pytest.fixture
def production(settings):
    # Backups have their own tests; here they would only slow the guard's down.
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "ENVIRONMENT": "production",
        "BACKUP_BEFORE_MIGRATE": False,
    }


def unchanged(alias: str) -> bool:
    return applied(alias, "ledger")[-1] == BEFORE and "memo" in table_columns(alias, "ledger_entry")


# Acceptance 1: no terminal -------------------------------------------------------------


def test_production_without_terminal_or_yes_refuses_at_once_and_is_audited(db_alias):
    ledger_with_rows(db_alias)
    # stdin is a pipe that stays open and silent: a run that waited for input would hang.
    child = start_child(db_alias, "safemigrate", "ledger", MIGRATOR_TEST_ENVIRONMENT="production")
    code = child.wait(timeout=120)
    out, err = child.communicate()
    assert code == 3
    assert "No terminal to ask on; pass --yes to confirm." in err
    assert "ML101 danger: Drops column memo of ledger_entry (3 rows)" in out  # risks shown
    assert unchanged(db_alias)
    history, _, _ = run_command("migrationhistory", "--json", database=db_alias)
    refused = json.loads(history)["runs"][0]
    assert (refused["command"], refused["outcome"], refused["environment"]) == (
        "safemigrate",
        "refused",
        "production",
    )
    assert "pass --yes" in refused["error"]
    assert refused["details"]["data_loss"] == [LOSS]
    assert refused["details"]["question"].startswith("Apply 2 migration(s) to 'default'")


def test_production_with_yes_needs_allow_data_loss_for_a_remove_field(db_alias, production):
    ledger_with_rows(db_alias)
    _, err, code = run_command("safemigrate", "ledger", "--noinput", "--yes", database=db_alias)
    assert code == 3
    assert f"It destroys data: {LOSS}. Pass --allow-data-loss as well as --yes" in err
    assert unchanged(db_alias)
    [refused] = refusals(db_alias)
    assert refused.details["data_loss"] == [LOSS]
    assert refused.arguments["assume_yes"] is True
    out, err, code = run_command(
        "safemigrate", "ledger", "--noinput", "--yes", "--allow-data-loss", database=db_alias
    )
    assert (code, err) == (0, "")
    assert "Applying ledger.0004_remove_entry_memo... OK" in out
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert "memo" not in table_columns(db_alias, "ledger_entry")
    assert len(refusals(db_alias)) == 1


def test_nothing_to_lose_needs_only_yes(db_alias, production):
    _, err, code = run_command("safemigrate", "ledger", "0003", database=db_alias)
    assert code == 3  # production, no terminal, no --yes
    assert "pass --yes" in err
    # Nothing at all was created, not even migrator's audit table: the refusal is logged.
    assert connections[db_alias].introspection.table_names() == []
    _, err, code = run_command("safemigrate", "--noinput", "--yes", database=db_alias)
    assert code == 0, err  # memo is dropped from a table this plan creates: nothing at stake


# Acceptance 2: a real pseudo-terminal ------------------------------------------------------


def _take_terminal() -> None:
    """In the child: make the pseudo-terminal its controlling terminal (for Ctrl-C)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read(master: int, until: bytes | None = None, timeout: float = 120) -> bytes:
    """Read the terminal until ``until`` shows up, or until the child closes it."""
    data = b""
    deadline = time.monotonic() + timeout
    while until is None or until not in data:
        ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise AssertionError(f"nothing more from the child: {data.decode(errors='replace')}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        data += chunk
    return data


def on_terminal(alias: str, answer: bytes) -> tuple[str, str, int]:
    """Run safemigrate in production on a pseudo-terminal; answer its prompt.

    Returns what was shown before the prompt, what came after, and the exit code.
    """
    master, slave = os.openpty()
    child = subprocess.Popen(
        django_admin("safemigrate", "ledger", "--no-color", "--no-backup"),
        env=child_env(alias, MIGRATOR_TEST_ENVIRONMENT="production"),
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    try:
        before = _read(master, b"to continue: ")
        assert b"to continue: " in before, before.decode(errors="replace")
        os.write(master, answer)
        after = _read(master)
        code = child.wait(timeout=120)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
            child.wait()
    return before.decode(errors="replace"), after.decode(errors="replace"), code


@pytest.mark.parametrize(
    "answer",
    [b"the-wrong-database\n", b"\n", b"\x04", b"\x03"],
    ids=["wrong-name", "empty-line", "end-of-input", "ctrl-c"],
)
def test_production_terminal_refuses_anything_but_the_database_name(db_alias, answer):
    ledger_with_rows(db_alias)
    before, after, code = on_terminal(db_alias, answer)
    assert code == 3, before + after
    assert "Cancelled; nothing was changed." in after
    assert unchanged(db_alias)
    assert len(refusals(db_alias)) == 1


def test_production_terminal_applies_when_the_name_is_typed(db_alias):
    ledger_with_rows(db_alias)
    name = guard.confirmation_word(connections[db_alias])
    before, after, code = on_terminal(db_alias, name.encode() + b"\n")
    assert code == 0, before + after
    # The risks and the data-loss report come before the question.
    prompt = before.index(f"Type {name!r} to continue: ")
    # The whole plan, every operation, is shown too.
    assert (
        -1
        < before.index(
            "Plan: 2 migration(s) to apply; risks: 4 to review (warning or danger), 0 info."
        )
        < prompt
    )
    assert -1 < before.index("  ledger.0005_normalise_account_names") < prompt
    assert -1 < before.index("ML101 danger: Drops column memo of ledger_entry (3 rows)") < prompt
    assert -1 < before.index(f"It destroys data: {LOSS}.") < prompt
    assert "Applying ledger.0004_remove_entry_memo... OK" in after
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert refusals(db_alias) == []


# Acceptance 3: other environments ----------------------------------------------------------


def test_development_shows_the_same_findings_as_warnings_and_does_not_ask(db_alias, settings):
    ledger_with_rows(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "development"}
    out, err, code = run_command("safemigrate", "ledger", database=db_alias, stdin=TTYInput(""))
    assert (code, err) == (0, "")
    risks_shown = out.index("Risks in this plan: 4 to review (warning or danger), 0 info.")
    assert risks_shown < out.index("ML101 danger: Drops column memo of ledger_entry (3 rows)")
    assert "ML201 warning: Raw Python operation: cannot be rolled back." in out
    assert "to continue" not in out
    assert out.index("Applying ledger.0004") > risks_shown
    assert applied(db_alias, "ledger")[-1] == "0005_normalise_account_names"
    assert refusals(db_alias) == []


# The guard as other commands call it ---------------------------------------------------------


def test_guard_keywords_for_other_commands(db_alias, production):
    ledger_with_rows(db_alias)
    connection = connections[db_alias]
    loss = LabelledFinding(
        None,
        None,
        Finding(
            code="restore_replaces_data",
            severity="danger",
            data_loss=True,
            message="Everything goes.",
            hint="",
        ),
    )
    with pytest.raises(ConfirmationRequired, match="Everything goes. Pass --allow-data-loss"):
        guard.require_confirmation(
            connection,
            question="Restore?",
            assume_yes=True,
            confirm=None,
            data_loss=[loss],
            command="restore",
            arguments={"backup": "b1"},
        )
    guard.require_confirmation(
        connection,
        question="Restore?",
        assume_yes=True,
        confirm=None,
        data_loss=[loss],
        allow_data_loss=True,
    )
    asked = []
    guard.require_confirmation(
        connection,
        question="Prune?",
        assume_yes=False,
        confirm=lambda question, expected: asked.append((question, expected)) or True,
    )
    assert asked == [("Prune?", guard.confirmation_word(connection))]
    [refused] = refusals(db_alias)
    assert (refused.command, refused.arguments) == ("restore", {"backup": "b1"})
