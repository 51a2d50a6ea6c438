"""Signals for monitoring runs, each also logged and, when configured, notified.

Every signal is sent with ``sender=Run`` (the model class) and ``run=<Run>``; migration
signals add ``migration="app_label.name"``, ``duration`` (seconds) and ``fake``::

    from django.dispatch import receiver
    from migrator.signals import run_failed

    @receiver(run_failed)
    def page_someone(sender, run, **kwargs):
        ...

A receiver that raises is logged and never fails the run (``send_robust``). Ctrl-C and
SIGTERM that arrive while one runs stop the run all the same.
"""

import logging
from typing import Any

from django.dispatch import Signal

from migrator import notify, secrets
from migrator.exceptions import RunInterrupted

logger = logging.getLogger(__name__)

run_started = Signal()
migration_applied = Signal()
migration_unapplied = Signal()
run_finished = Signal()
run_failed = Signal()
run_refused = Signal()
run_interrupted = Signal()

# Event name (as in MIGRATOR["NOTIFY_EVENTS"], checked against conf.NOTIFY_EVENTS) -> signal.
EVENTS: dict[str, Signal] = {
    "started": run_started,
    "applied": migration_applied,
    "unapplied": migration_unapplied,
    "finished": run_finished,
    "failed": run_failed,
    "refused": run_refused,
    "interrupted": run_interrupted,
}
OUTCOME_EVENTS = {
    "succeeded": "finished",
    "failed": "failed",
    "refused": "refused",
    "interrupted": "interrupted",
}
_LEVELS = {"failed": logging.ERROR, "refused": logging.WARNING, "interrupted": logging.WARNING}


def run_event(event: str, run: Any, **extra: Any) -> None:
    """Log, signal and notify one event of a run; raises only an interrupt (SIGTERM)."""
    try:
        _log(event, run, extra)
        _signal(event, run, extra)
        notify.send(event, run, **extra)
    except RunInterrupted:  # SIGTERM, an Exception: it stops the run as Ctrl-C does
        raise
    except Exception:  # observability must never change how a run ends
        logger.exception("Reporting the %r event of run %s failed.", event, getattr(run, "pk", ""))


def run_closed(run: Any) -> None:
    """The event for how a run ended (its outcome), if it ended in a known way."""
    event = OUTCOME_EVENTS.get(run.outcome)
    if event is not None:
        run_event(event, run)


def _signal(event: str, run: Any, extra: dict[str, Any]) -> None:
    sender = type(run) if run is not None else "migrator"
    for receiver, result in EVENTS[event].send_robust(sender=sender, run=run, **extra):
        if isinstance(result, RunInterrupted):  # SIGTERM while it ran, not its failure
            raise result
        if isinstance(result, Exception):
            logger.error(
                "Receiver %s of the %r signal raised %s.",
                getattr(receiver, "__qualname__", repr(receiver)),
                event,
                type(result).__name__,
            )


def _log(event: str, run: Any, extra: dict[str, Any]) -> None:
    if not logger.isEnabledFor(_LEVELS.get(event, logging.INFO)):
        return  # once per migration: build and scrub the fields only for a listening logger
    fields = notify.run_fields(run)
    fields.update(event=event, **{k: v for k, v in extra.items() if k in {"migration", "fake"}})
    if "duration" in extra:
        fields["duration"] = extra["duration"]
    fields = secrets.mask(fields)
    who = f"{fields['command']} run {fields['run_id']} on {fields['database']!r}"
    if event in {"applied", "unapplied"}:
        logger.info("%s: %s %s.", who, event.capitalize(), fields.get("migration"), extra=fields)
    elif fields.get("error"):
        logger.log(
            _LEVELS.get(event, logging.INFO), "%s %s: %s", who, event, fields["error"], extra=fields
        )
    else:
        logger.log(_LEVELS.get(event, logging.INFO), "%s %s.", who, event, extra=fields)
