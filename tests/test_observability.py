"""Signals, log records and NOTIFY receivers: what monitoring hears about each run.

Every test runs on SQLite and PostgreSQL (the ``db_alias`` fixture), through the commands.
Receivers run against a real HTTP server on 127.0.0.1; nothing is mocked or timed.
"""

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from django.db import connections

from migrator import conf, notify, secrets, signals
from migrator.models import Run
from tests.utils import own_migration_labels, run_command

PASSWORD = "Hunter2-s3cret-pw"  # noqa: S105  (a test secret that must never be shown)
TOKEN = "T0KEN-in-the-path"  # noqa: S105
RECEIVED: list[dict] = []  # what recording_receiver got
RELEASE = threading.Event()  # hanging_receiver blocks until the test sets it


def recording_receiver(summary: dict) -> None:
    RECEIVED.append(summary)


def hanging_receiver(summary: dict) -> None:
    RELEASE.wait()


def failing_receiver(summary: dict) -> None:
    raise ConnectionError(f"chat service said no to postgres://bot:{PASSWORD}@chat.example/")


@pytest.fixture
def heard():
    """(event, run id, migration) for every migrator signal, in the order they were sent."""
    events: list[tuple] = []
    for name, signal in signals.EVENTS.items():

        def receiver(sender, run, name=name, **kwargs):
            assert sender is Run
            events.append((name, run.pk, kwargs.get("migration")))

        signal.connect(receiver, weak=False, dispatch_uid=f"heard-{name}")
    yield events
    for name, signal in signals.EVENTS.items():
        signal.disconnect(dispatch_uid=f"heard-{name}")


@pytest.fixture
def webhook():
    """A local HTTP server that records each JSON POST it receives."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(
                {
                    "type": self.headers["Content-Type"],
                    "path": self.path,
                    "body": body.decode(),
                    "authorization": self.headers["Authorization"],
                }
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(
        url=f"http://127.0.0.1:{server.server_port}/hooks/{TOKEN}",
        port=server.server_port,
        received=received,
    )
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


@pytest.fixture
def notifying(settings):
    """Configure MIGRATOR NOTIFY for a test: notifying(receivers, events, timeout)."""
    RECEIVED.clear()
    RELEASE.clear()

    def configure(receivers: list[str], events: list[str], timeout: float = 30.0) -> None:
        settings.MIGRATOR = {
            **settings.MIGRATOR,
            "NOTIFY": receivers,
            "NOTIFY_EVENTS": events,
            "NOTIFY_TIMEOUT": timeout,
        }

    yield configure
    RELEASE.set()


def run_ids(alias: str) -> list[int]:
    return list(Run.objects.using(alias).order_by("id").values_list("id", flat=True))


def test_signals_and_log_records_in_order_for_a_successful_run(db_alias, scenario, heard, caplog):
    scenario("failing")
    caplog.set_level(logging.INFO, logger="migrator")
    assert run_command("safemigrate", "scenarios", "0001", database=db_alias)[2] == 0
    [run_id] = run_ids(db_alias)
    assert heard == [
        ("started", run_id, None),
        ("applied", run_id, "scenarios.0001_initial"),
        ("finished", run_id, None),
    ]
    records = [r for r in caplog.records if r.name == "migrator.signals"]
    assert [(r.event, r.levelname) for r in records] == [
        ("started", "INFO"),
        ("applied", "INFO"),
        ("finished", "INFO"),
    ]
    finished = records[-1]
    assert (finished.run_id, finished.command, finished.database) == (
        run_id,
        "safemigrate",
        db_alias,
    )
    assert (finished.environment, finished.outcome, finished.error) == ("test", "succeeded", "")
    assert finished.duration >= 0
    assert records[1].migration == "scenarios.0001_initial"
    assert finished.getMessage() == f"safemigrate run {run_id} on {db_alias!r} finished."


def test_signals_in_order_for_a_failed_run_and_the_webhook_gets_the_summary(
    db_alias, scenario, heard, notifying, webhook, caplog
):
    scenario("failing")
    notifying([webhook.url], ["failed"])
    _, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5, err
    [run_id] = run_ids(db_alias)
    assert heard == [
        ("started", run_id, None),
        ("applied", run_id, "scenarios.0001_initial"),
        ("failed", run_id, None),
    ]
    [post] = webhook.received
    assert (post["type"], post["path"]) == ("application/json", f"/hooks/{TOKEN}")
    summary = json.loads(post["body"])
    assert summary == {
        **summary,
        "event": "failed",
        "project": "tests",
        "environment": "test",
        "database": db_alias,
        "command": "safemigrate",
        "run_id": run_id,
        "outcome": "failed",
        "migrations": [*own_migration_labels(), "scenarios.0001_initial"],  # own made first
        "failed_migration": "scenarios.0002_breaks",
        "error": "RuntimeError: scenario step failed on purpose",
        "backup_id": None,
    }
    assert summary["duration"] >= 0
    [failed] = [r for r in caplog.records if getattr(r, "event", None) == "failed"]
    assert failed.levelname == "ERROR"
    assert failed.failed_migration == "scenarios.0002_breaks"


def test_a_failed_rollback_is_reported_failed_once(db_alias, scenario, heard):
    scenario("rollback_failing")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    _, err, code = run_command(
        "rollback",
        "scenarios",
        "0001",
        "--noinput",
        "--yes",
        "--allow-data-loss",
        database=db_alias,
    )
    assert code == 5, err
    rollback_id = Run.objects.using(db_alias).get(command="rollback").pk
    closing = [event for event, run_id, _ in heard if run_id == rollback_id]
    assert closing == ["started", "unapplied", "failed"]
    assert "Still applied: scenarios.0003_reverse_fails" in (
        Run.objects.using(db_alias).get(pk=rollback_id).error
    )


def test_signals_for_a_refused_run(db_alias, scenario, heard, settings, notifying):
    scenario("failing")
    assert run_command("safemigrate", "scenarios", "0001", database=db_alias)[2] == 0
    heard.clear()
    notifying([f"{__name__}.recording_receiver"], ["refused"])
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    _, err, code = run_command("safemigrate", "scenarios", "--noinput", database=db_alias)
    assert code == 3, err
    refused = Run.objects.using(db_alias).get(outcome="refused")
    assert heard == [("refused", refused.pk, None)]
    [summary] = RECEIVED  # why, and when: as the audit has it
    assert summary["error"] == refused.error != ""
    assert summary["finished_at"] is not None
    assert summary["duration"] >= 0


def test_a_hanging_receiver_is_abandoned_after_the_timeout(db_alias, scenario, notifying, caplog):
    scenario("failing")
    notifying(
        [f"{__name__}.hanging_receiver", f"{__name__}.failing_receiver", "no.such.receiver"],
        ["finished"],
        timeout=2,
    )
    out, err, code = run_command("safemigrate", "scenarios", "0001", database=db_alias)
    assert (code, err) == (0, ""), err
    assert not RELEASE.is_set()  # the receiver is still hanging: the run did not wait for it
    warnings = [r.getMessage() for r in caplog.records if r.name == "migrator.notify"]
    assert f"Notification receiver {__name__}.hanging_receiver did not finish within 2.0s; " in (
        "\n".join(warnings)
    )
    assert any(
        message.startswith(f"Notification receiver {__name__}.failing_receiver failed: ")
        for message in warnings
    )
    assert any("no.such.receiver failed: " in message for message in warnings)
    assert Run.objects.using(db_alias).get().outcome == "succeeded"


def test_receivers_and_signal_receivers_that_fail_never_fail_the_run(db_alias, scenario, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("monitoring is down")

    scenario("failing")
    signals.run_started.connect(broken, weak=False, dispatch_uid="broken")
    try:
        assert run_command("safemigrate", "scenarios", "0001", database=db_alias)[2] == 0
    finally:
        signals.run_started.disconnect(dispatch_uid="broken")
    assert "raised RuntimeError" in caplog.text
    assert Run.objects.using(db_alias).get().outcome == "succeeded"


def test_no_password_in_any_payload_log_record_or_output(
    db_alias, scenario, notifying, webhook, caplog, monkeypatch
):
    monkeypatch.setitem(connections[db_alias].settings_dict, "PASSWORD", PASSWORD)
    scenario("batch_leaky")
    notifying(
        [webhook.url, f"{__name__}.recording_receiver", f"{__name__}.failing_receiver"],
        ["started", "applied", "failed"],
    )
    caplog.set_level(logging.DEBUG)
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert "could not reach postgres://***@db.internal:5432/app" in err
    payloads = [post["body"] for post in webhook.received] + [json.dumps(RECEIVED)]
    assert [json.loads(body)["event"] for body in payloads[:-1]] == [
        "started",
        "applied",
        "failed",
    ]
    so_far = [*own_migration_labels(), "scenarios.0001_initial"]
    assert json.loads(payloads[1])["migrations"] == so_far
    assert "postgres://***@db.internal:5432/app" in json.loads(payloads[2])["error"]
    records = [repr(vars(record)) + record.getMessage() for record in caplog.records]
    run = Run.objects.using(db_alias).get()
    shown = [out, err, caplog.text, run.error, repr(run.details), *payloads, *records]
    assert [text for text in shown if PASSWORD in text] == []
    assert [text for text in records if TOKEN in text] == []  # webhook paths hold tokens


def test_the_summary_masks_a_password_even_outside_a_url(db_alias, monkeypatch):
    monkeypatch.setitem(connections[db_alias].settings_dict, "PASSWORD", PASSWORD)
    run = Run(command="safemigrate", database=db_alias, environment="test", outcome="failed")
    run.error = f"FATAL: password {PASSWORD} rejected"
    summary = notify.summary("failed", run)
    assert summary["error"] == "FATAL: password *** rejected"
    assert summary["migrations"] == []


def test_a_password_quoted_by_a_failing_migration_is_masked_everywhere(
    db_alias, scenario, notifying, caplog, monkeypatch
):
    monkeypatch.setitem(connections[db_alias].settings_dict, "PASSWORD", PASSWORD)
    scenario("leaks_password")
    notifying([f"{__name__}.recording_receiver"], ["failed"])
    caplog.set_level(logging.DEBUG)
    out, err, code = run_command("safemigrate", "scenarios", database=db_alias)
    assert code == 5
    assert "auth failed for ***; dsn host=db.internal password=*** user=app" in err
    assert "postgres://***@db.internal/app" in err
    run = Run.objects.using(db_alias).get(command="safemigrate")
    records = [repr(vars(record)) + record.getMessage() for record in caplog.records]
    shown = [out, err, caplog.text, run.error, repr(run.details), json.dumps(RECEIVED), *records]
    assert [text for text in shown if PASSWORD in text] == []
    assert RECEIVED[0]["error"] == run.error


def test_password_assignments_are_masked_without_a_configured_password():
    text = "connect: host=db password='a b' sslpassword=k3y; {'PASSWORD': 'x1'}"
    assert secrets.mask(text) == "connect: host=db password=*** sslpassword=***; {'PASSWORD': ***}"


def test_the_events_notify_events_may_name_are_the_events_sent():
    assert tuple(signals.EVENTS) == conf.NOTIFY_EVENTS


def test_a_webhook_url_with_credentials_is_sent_basic_auth_and_they_are_never_logged(
    db_alias, scenario, notifying, webhook, caplog
):
    """``https://user:password@host/...``, as curl takes it; urllib alone read the
    password as a port: never delivered, and the password in the log record."""
    scenario("failing")
    password = f"{PASSWORD}%2Fx"  # percent-encoded in the URL, as a '/' in it must be
    notifying([f"http://deploy%20bot:{password}@127.0.0.1:{webhook.port}/hook"], ["failed"])
    caplog.set_level(logging.DEBUG)
    assert run_command("check")[2] == 0
    out, err, code = run_command("safemigrate", "scenarios", "--json", database=db_alias)
    assert code == 5
    [post] = webhook.received
    assert post["path"] == "/hook"
    assert (
        post["authorization"]
        == "Basic " + base64.b64encode(f"deploy bot:{PASSWORD}/x".encode()).decode()
    )
    assert json.loads(post["body"])["event"] == "failed"
    assert "Notification receiver" not in caplog.text  # delivered: nothing to log
    records = [repr(vars(record)) + record.getMessage() for record in caplog.records]
    assert [text for text in [out, err, caplog.text, *records] if PASSWORD in text] == []


def test_a_webhook_password_is_masked_when_its_delivery_fails(notifying, caplog):
    """A server that is not there: the failure is logged with the host only."""
    notify.dispatch(
        {"event": "failed"}, (f"http://bot:{PASSWORD}@127.0.0.1:9/hook/{TOKEN}",), timeout=30
    )
    [record] = [r for r in caplog.records if r.name == "migrator.notify"]
    assert record.getMessage().startswith(
        "Notification receiver http://127.0.0.1:9/... failed: URLError: "
    )
    assert PASSWORD not in caplog.text + repr(vars(record))
