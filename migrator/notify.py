"""``MIGRATOR["NOTIFY"]``: tell people and systems how a run went, without ever holding it up.

Each receiver is a dotted path to a callable, called with the summary (a dict that is
valid JSON), or an ``http(s)://`` URL that receives the summary as a JSON POST. Receivers
run in daemon threads; the run waits for them at most ``NOTIFY_TIMEOUT`` seconds in all,
then carries on. A failing, slow or missing receiver is logged and otherwise ignored.
"""

import base64
import json
import logging
import os
import threading
import time
import urllib.request
from contextlib import suppress
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings
from django.db import DatabaseError
from django.utils.module_loading import import_string

from migrator import secrets
from migrator.conf import get_settings
from migrator.models import MigrationHash

logger = logging.getLogger(__name__)

WEBHOOK_SCHEMES = ("http://", "https://")


def send(event: str, run: Any, **extra: Any) -> dict[str, str]:
    """Notify the configured receivers of an event if ``NOTIFY_EVENTS`` lists it."""
    conf = get_settings()
    if not conf.notify or event not in conf.notify_events:
        return {}
    return dispatch(summary(event, run, **extra), conf.notify, timeout=conf.notify_timeout)


def summary(event: str, run: Any, **extra: Any) -> dict[str, Any]:
    """What receivers get: the run's facts, with every secret masked."""
    fields = run_fields(run)
    document = {
        "event": event,
        "project": project_name(),
        "environment": fields["environment"],
        "database": fields["database"],
        "command": fields["command"],
        "run_id": fields["run_id"],
        "outcome": fields["outcome"],
        "migrations": _migrations(run),
        "failed_migration": fields["failed_migration"],
        "duration": fields["duration"],
        "error": fields["error"],
        "backup_id": fields["backup_id"],
        "actor": fields["actor"],
        "host": fields["host"],
        "git_revision": fields["git_revision"],
        "started_at": fields["started_at"],
        "finished_at": fields["finished_at"],
    }
    if "migration" in extra:
        document["migration"] = extra["migration"]
    return secrets.mask(document)


def run_fields(run: Any) -> dict[str, Any]:
    """A run's loggable fields: no arguments, no connection settings, nothing secret."""
    if run is None:
        return dict.fromkeys(
            (
                "run_id",
                "command",
                "database",
                "environment",
                "outcome",
                "duration",
                "backup_id",
                "error",
                "failed_migration",
                "actor",
                "host",
                "git_revision",
                "started_at",
                "finished_at",
            ),
        )
    return {
        "run_id": run.pk,
        "command": run.command,
        "database": run.database,
        "environment": run.environment,
        "outcome": run.outcome,
        "duration": run.duration,
        "backup_id": run.backup_id or None,
        "error": run.error,
        "failed_migration": run.failed_migration,
        "actor": run.actor,
        "host": run.host,
        "git_revision": run.git_revision,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def project_name() -> str:
    """The project's top package, from ``ROOT_URLCONF`` or the settings module."""
    dotted = (
        getattr(settings, "ROOT_URLCONF", None)
        or getattr(settings, "SETTINGS_MODULE", None)  # None under override_settings
        or os.environ.get("DJANGO_SETTINGS_MODULE", "")
    )
    return dotted.split(".")[0]


def dispatch(payload: dict[str, Any], receivers: tuple[str, ...], *, timeout: float):
    """Deliver to every receiver in parallel; wait ``timeout`` seconds in all.

    Returns receiver (as logged) -> ``delivered``, ``failed`` or ``abandoned``.
    """
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    passwords = secrets.configured_secrets()  # read here: threads see other connections
    outcomes: dict[str, str] = {}
    threads = []
    for receiver in receivers:
        thread = threading.Thread(
            target=_deliver,
            args=(receiver, body, timeout, outcomes, passwords),
            name=f"migrator-notify {describe_receiver(receiver)}",
            daemon=True,
        )
        thread.start()
        threads.append((receiver, thread))
    deadline = time.monotonic() + timeout
    for receiver, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            outcomes[describe_receiver(receiver)] = "abandoned"
            logger.warning(
                "Notification receiver %s did not finish within %ss; abandoned.",
                describe_receiver(receiver),
                timeout,
                extra={"receiver": describe_receiver(receiver), "event": payload.get("event")},
            )
    return dict(outcomes)


def describe_receiver(receiver: str) -> str:
    """A receiver as logs may show it: a webhook by scheme and host only (paths hold tokens)."""
    if receiver.startswith(WEBHOOK_SCHEMES):
        parts = urlsplit(receiver)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."
    return receiver


def _webhook_request(url: str, body: bytes) -> urllib.request.Request:
    """The POST of ``body`` to a webhook. Credentials in its URL (``user:password@host``)
    are sent as HTTP basic auth, as curl sends them: urllib would read them as a port."""
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": "django-migrator"}
    if "@" in parts.netloc:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return urllib.request.Request(url, data=body, method="POST", headers=headers)


def _deliver(receiver, body: bytes, timeout: float, outcomes: dict, passwords: list[str]):
    name = describe_receiver(receiver)
    password = urlsplit(receiver).password if receiver.startswith(WEBHOOK_SCHEMES) else None
    if password:  # the webhook's own, masked as the databases' are
        passwords = [*passwords, password, unquote(password)]
    try:
        if receiver.startswith(WEBHOOK_SCHEMES):
            request = _webhook_request(receiver, body)
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read(65536)
        else:
            import_string(receiver)(json.loads(body))
    except Exception as exc:  # a receiver must never fail the run
        outcomes.setdefault(name, "failed")
        logger.warning(
            "Notification receiver %s failed: %s",
            name,
            secrets.mask(f"{type(exc).__name__}: {exc}", secrets=passwords),
            extra={"receiver": name},
        )
    else:
        outcomes.setdefault(name, "delivered")


def _migrations(run: Any) -> list[str]:
    """What the run has applied or unapplied so far: its steps, or, while it applies (its
    apply steps are written as it ends), the hash records its migrations committed."""
    if run is None or run.pk is None:
        return []
    with suppress(DatabaseError):
        steps = list(run.steps.order_by("id").values_list("app_label", "name"))
        if not steps:
            hashes = MigrationHash.objects.using(run._state.db).filter(run_id=run.pk)
            steps = list(hashes.order_by("applied_at", "id").values_list("app_label", "name"))
        return [f"{app_label}.{name}" for app_label, name in steps]
    return []
