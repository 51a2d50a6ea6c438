"""Bad input and hostile environments get a one-line answer and the contract's exit code (issue 14).

Settings with unknown keys or wrong types, a migration file that does not compile, nonsense
``--lock-timeout`` values, environment names in other spellings, a container whose uid has
no passwd entry, and output that nobody reads any more (``| head``).
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from django.db import connections

from migrator.models import Run
from tests.conftest import SETS, _admin_execute
from tests.utils import ROOT, applied, child_env, django_admin, repointed, run_child, run_command

EVERY_COMMAND = [
    ("safemigrate",),
    ("rollback", "--last"),
    ("backup",),
    ("backup", "--list"),
    ("migrationstatus",),
    ("migrationhistory",),
    ("verifymigrations",),
    ("testmigrations",),
]
NO_MIGRATION_FILES_READ = {("backup", "--list"), ("migrationhistory",)}  # they work
RUN_LOCK_TIMEOUT_ABC = (
    "MIGRATOR['RUN_LOCK_TIMEOUT'] is 'abc': must be a number of seconds. "
    "Fix MIGRATOR['RUN_LOCK_TIMEOUT'] in your settings."
)
READ_ONLY = {
    "sqlite": "attempt to write a readonly database",
    "postgresql": "cannot execute CREATE TABLE in a read-only transaction",
}
BROKEN_MIGRATION = "from django.db import migrations\n\n\nclass Migration(migrations.Migration)\n"


@pytest.fixture
def backup_dir(settings, tmp_path) -> Path:
    directory = tmp_path / "backups"
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_DIR": str(directory)}
    return directory


# Settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("BACKUP_KEPT", 3, "Unknown MIGRATOR key 'BACKUP_KEPT'; known keys are "),
        ("RUN_LOCK_TIMEOUT", "abc", RUN_LOCK_TIMEOUT_ABC),
        (
            "BACKUP_KEEP",
            "x",
            "MIGRATOR['BACKUP_KEEP'] is 'x': must be a whole number. "
            "Fix MIGRATOR['BACKUP_KEEP'] in your settings.",
        ),
        (
            "DIRECT_DATABASES",
            {"default": "pooler"},
            "MIGRATOR['DIRECT_DATABASES']: 'pooler' is not in "
            "DATABASES. Fix MIGRATOR['DIRECT_DATABASES'] in your settings.",
        ),
        (  # PostgreSQL refused it only when the first migration ran
            "PG_LOCK_TIMEOUT",
            1e12,
            "MIGRATOR['PG_LOCK_TIMEOUT'] is 1000000000000.0: must be at most 2147483.647 "
            "seconds (PostgreSQL's limit). Fix MIGRATOR['PG_LOCK_TIMEOUT'] in your settings.",
        ),
        (
            "BACKUP_STORAGE",
            "backup",
            "MIGRATOR['BACKUP_STORAGE'] is 'backup': 'backup' is not in STORAGES (default, "
            "staticfiles). Fix MIGRATOR['BACKUP_STORAGE'] in your settings.",
        ),
        (  # a typo in the key would leave the pooled connection in use
            "DIRECT_DATABASES",
            {"defualt": "postgres"},
            "MIGRATOR['DIRECT_DATABASES']: its key 'defualt' is not "
            "in DATABASES (keys are the aliases the app uses). "
            "Fix MIGRATOR['DIRECT_DATABASES'] in your settings.",
        ),
        (  # a direct connection elsewhere would migrate another database
            "DIRECT_DATABASES",
            {"default": "postgres"},
            "MIGRATOR['DIRECT_DATABASES']: 'default' is a SQLite "
            "database and its direct connection a PostgreSQL one; both must reach the same "
            "database. Fix MIGRATOR['DIRECT_DATABASES'] in your settings.",
        ),
        (  # the URL's credentials are masked
            "DIRECT_DATABASES",
            {"default": "mysqlx://deploy:hunter2@db.internal/app"},
            "MIGRATOR['DIRECT_DATABASES']: the "
            "URL for 'default' is not one dj-database-url reads (Scheme 'mysqlx://' is unknown). "
            "Fix MIGRATOR['DIRECT_DATABASES'] in your settings.",
        ),
        (  # a URL without its scheme: masking would not know its password
            "DIRECT_DATABASES",
            {"default": "deploy:hunter2@db.internal:5432/app"},
            "MIGRATOR['DIRECT_DATABASES']: the value for 'default' is neither an alias of "
            "DATABASES nor a database URL (scheme://host:port/name, credentials before the "
            "host). "
            "Fix MIGRATOR['DIRECT_DATABASES'] in your settings.",
        ),
    ],
    ids=[
        "unknown-key",
        "lock-timeout-abc",
        "backup-keep-x",
        "direct-unknown-alias",
        "pg-lock-timeout-too-long",
        "storage-unknown-alias",
        "direct-unknown-key",
        "direct-other-vendor",
        "direct-unknown-url-scheme",
        "direct-url-without-scheme",
    ],
)
def test_a_bad_setting_is_one_line_and_exit_1_for_every_command(
    db_alias, settings, backup_dir, key, value, expected
):
    settings.MIGRATOR = {**settings.MIGRATOR, key: value}
    for command in [*EVERY_COMMAND, ("restore", "some-backup")]:
        out, err, code = run_command(*command, database=db_alias)
        assert (code, out) == (1, ""), command
        assert err.startswith(expected), (command, err)
        assert err.count("\n") == 1, (command, err)
    assert connections[db_alias].introspection.table_names() == []
    assert not backup_dir.exists()


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_direct_database_url_without_a_database_name_is_one_line(db_alias, settings):
    """Django would raise ImproperlyConfigured, a traceback, as it connects."""
    url = "postgresql://deploy:hunter2@127.0.0.1:5432"
    settings.MIGRATOR = {**settings.MIGRATOR, "DIRECT_DATABASES": {db_alias: url}}

    out, err, code = run_command("migrationstatus", "--json", database=db_alias)

    said = (
        "MIGRATOR['DIRECT_DATABASES']: the URL for 'postgres' names no database (.../name at "
        "its end). Fix MIGRATOR['DIRECT_DATABASES'] in your settings."
    )
    assert (code, err) == (1, f"{said}\n")
    assert json.loads(out)["error"] == said


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_manage_py_check_reports_bad_settings_with_ids_and_hints(db_alias, settings):
    """Reads no database of migrator's; Django 6.1's model checks read each one's features."""
    assert run_command("check") == ("System check identified no issues (0 silenced).\n", "", 0)
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "BACKUP_KEPT": 3,
        "BACKUP_KEEP": -1,
        "PG_LOCK_TIMEOUT": float("nan"),
        "CONFIRM_ENVIRONMENTS": "production",
        "THIRD_PARTY_STRICT": "no",
        "DIRECT_DATABASES": {"default": "postgres://deploy:hunter2@db.internal:port/app"},
    }
    _, err, code = run_command("check")
    assert code == 1
    assert "?: (migrator.E010) Unknown MIGRATOR key 'BACKUP_KEPT'; known keys are " in err
    assert "HINT: Fix MIGRATOR['BACKUP_KEPT'] in your settings." in err
    assert "?: (migrator.E011) MIGRATOR['BACKUP_KEEP'] is -1: must be 0 or more." in err
    assert "(migrator.E011) MIGRATOR['PG_LOCK_TIMEOUT'] is nan: must be a finite number" in err
    assert "(migrator.E011) MIGRATOR['CONFIRM_ENVIRONMENTS'] is 'production': must be a " in err
    assert "(migrator.E011) MIGRATOR['THIRD_PARTY_STRICT'] is 'no': must be True or False." in err
    assert (
        "(migrator.E011) MIGRATOR['DIRECT_DATABASES']: the URL for 'default' is not one "
        "dj-database-url reads (" in err
    )
    assert "hunter2" not in err
    assert err.count("HINT: Fix MIGRATOR[") == 6
    settings.MIGRATOR = []
    _, err, code = run_command("check")
    assert code == 1
    assert "(migrator.E011) MIGRATOR must be a dict.\n\tHINT: Fix MIGRATOR in your settings." in err


@pytest.mark.parametrize("code", ["ml201", "ML 201", "ML0201", "ML20l"])
def test_a_misspelt_blocking_risk_is_refused(db_alias, settings, code):
    """A gate that names no code never closes: a typo must not turn it off unnoticed."""
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML101", code]}
    out, err, code_ = run_command("safemigrate", "--plan", database=db_alias)
    problem = (
        f"MIGRATOR['BLOCKING_RISKS'] is ['ML101', {code!r}]: has {code!r}, which no finding's "
        "code can be: a code is ML and three digits (ML201), as docs/risks.md lists them."
    )
    assert (code_, out, err) == (
        1,
        "",
        f"{problem} Fix MIGRATOR['BLOCKING_RISKS'] in your settings.\n",
    )


def test_a_blocking_risk_no_finding_has_fails_the_checks(db_alias, settings):
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML201", "ML999"]}
    _, err, code = run_command("check")
    assert code == 1
    assert (
        "(migrator.E011) MIGRATOR['BLOCKING_RISKS'] has 'ML999', which no risk finding has: "
        "the gate it names never closes." in err
    )
    assert "HINT: Use the codes docs/risks.md lists: ML101, ML102," in err


@pytest.mark.parametrize(
    ("notify", "events", "problem"),
    [
        (
            ["http://127.0.0.1:notaport/hook/T000/TOKEN"],
            ["failed"],
            "a webhook URL has a bad port (http://127.0.0.1/...).",
        ),
        (
            ["ftp://example.com/T000/TOKEN"],
            ["failed"],
            "a webhook URL is not http(s)://host/... (ftp://example.com/...).",
        ),
        (
            [""],
            ["failed"],
            "'' is neither an http(s):// webhook URL nor the dotted path of a callable.",
        ),
        (
            ["https:/hooks.slack.com/services/T000/B000/TOKEN"],
            ["failed"],
            "'https:/hooks.slack.com/...' is neither an http(s):// webhook URL nor the dotted "
            "path of a callable.",
        ),
        (
            ["ops.alerts.notify", "https//bot:TOKEN@hooks.slack.com/services/T000/B000/TOKEN"],
            ["failed"],
            "'https//hooks.slack.com/...' is neither an http(s):// webhook URL nor the dotted "
            "path of a callable.",
        ),
        (
            ["hooks.slack.com/services/T000/B000/TOKEN"],
            ["failed"],
            "'hooks.slack.com/...' is neither an http(s):// webhook URL nor the dotted "
            "path of a callable.",
        ),
        (
            "https://hooks.example.com/services/T000/B000/TOKEN",
            ["failed"],
            "must be a list of strings.",
        ),
        (
            [],
            ["failure", "refuse"],
            "has unknown event(s) 'failure', 'refuse'; the events are "
            "started, applied, unapplied, finished, failed, refused, interrupted.",
        ),
    ],
    ids=[
        "bad-port",
        "scheme",
        "empty",
        "one-slash",
        "no-colon",
        "no-scheme",
        "not-a-list",
        "events",
    ],
)
def test_a_notify_setting_that_would_silence_alerts_is_refused(
    db_alias, settings, notify, events, problem
):
    """A typo must not turn monitoring off unnoticed, nor print a webhook's token."""
    settings.MIGRATOR = {**settings.MIGRATOR, "NOTIFY": notify, "NOTIFY_EVENTS": events}
    key = "NOTIFY_EVENTS" if notify == [] else "NOTIFY"
    shown = f" is {events!r}:" if key == "NOTIFY_EVENTS" else ":"

    _, check_err, check_code = run_command("check")
    out, err, code = run_command("safemigrate", database=db_alias)

    line = f"MIGRATOR[{key!r}]{shown} {problem}"
    assert (code, out, err) == (1, "", f"{line} Fix MIGRATOR[{key!r}] in your settings.\n")
    assert check_code == 1
    assert f"(migrator.E011) {line}" in check_err
    document, _, _ = run_command("migrationstatus", "--json", database=db_alias)
    assert json.loads(document)["error"] == f"{line} Fix MIGRATOR[{key!r}] in your settings."
    assert "TOKEN" not in check_err + err + document


def test_on_the_command_line_a_bad_setting_prints_one_line_and_no_traceback(db_alias):
    bad = json.dumps({"RUN_LOCK_TIMEOUT": "abc"})
    done = run_child(db_alias, "migrationstatus", MIGRATOR_TEST_SETTINGS=bad)
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"CommandError: {RUN_LOCK_TIMEOUT_ABC}\n",
    )
    done = run_child(db_alias, "migrationstatus", "--traceback", MIGRATOR_TEST_SETTINGS=bad)
    assert done.returncode == 1
    assert "Traceback (most recent call last):" in done.stderr


def test_on_the_command_line_a_refusal_is_one_line_on_stderr(db_alias):
    """migrator logs each refused run; with no logging configured, Python's last-resort
    handler printed that record to stderr above the error."""
    assert run_child(db_alias, "safemigrate", "--noinput").returncode == 0
    done = run_child(db_alias, "rollback", "nosuchapp", "zero")
    assert (done.returncode, done.stdout) == (7, "")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("CommandError: No app with migrations is labelled 'nosuchapp'")


@pytest.mark.parametrize(
    "args",
    [
        ("backup", "--prune", "--keep", "x"),
        ("backup", "--list", "--prune"),
        ("safemigrate", "--stage", "later"),
        ("restore",),
    ],
    ids=["not-a-number", "exclusive-flags", "unknown-choice", "missing-argument"],
)
def test_on_the_command_line_bad_arguments_with_json_still_write_one_document(db_alias, args):
    done = run_child(db_alias, *args, "--json", "--database", "default")
    assert done.returncode == 1
    document = json.loads(done.stdout)  # one document, nothing else on stdout
    assert (document["command"], document["database"]) == (args[0], "default")
    assert (document["outcome"], document["exit_code"]) == ("failed", 1)
    assert done.stderr.endswith(f"error: {document['error']}\n")


# A migration file that does not compile ------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (BROKEN_MIGRATION, "line 4: expected ':'. Fix the file and run"),
        (
            "from django.db import migrations\nimport removed_helpers\n",
            "line 2: ModuleNotFoundError: No module named 'removed_helpers'. Fix the file, or "
            "install what it imports, and run",
        ),
        (
            "from django.db import migrations\n\nSIZE = migrations.NoSuchOperation\n",
            "line 3: AttributeError: module 'django.db.migrations' has no attribute "
            "'NoSuchOperation'. Fix the file, or install what it imports, and run",
        ),
    ],
    ids=["does-not-compile", "imports-what-is-gone", "names-what-is-gone"],
)
def test_a_migration_that_does_not_load_is_named_by_every_command(
    db_alias, migration_set, backup_dir, content, problem
):
    copy = migration_set("basic")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    out, err, code = run_command("backup", database=db_alias, verbosity=0)
    assert code == 0, err
    backup_id = out.strip()
    broken = copy / "0005_broken.py"
    broken.write_text(content)
    expected = f"Cannot load {broken}, {problem} the command again.\n"
    for command in [*EVERY_COMMAND, ("restore", backup_id, "--yes")]:
        result = run_command(*command, database=db_alias)
        if command in NO_MIGRATION_FILES_READ:
            assert result[1:] == ("", 0), command
        else:
            assert result == ("", expected, 1), command
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_widget_size"]
    out, err, code = run_command("check")  # every manage.py command's checks: one error
    assert code == 1
    assert f"(migrator.E007) {expected}" in err


def test_a_migration_file_without_a_migration_class_is_named(db_alias, migration_set):
    (migration_set("basic") / "0005_notes.py").write_text("NOTES = 'no class here'\n")
    expected = (
        "Migration 0005_notes in app scenarios has no Migration class. Give the file a "
        "Migration class, or move it out of the migrations package."
    )
    for command, options in [
        ("safemigrate", {"database": db_alias}),
        ("migrationstatus", {"database": db_alias}),
        ("check", {}),
    ]:
        out, err, code = run_command(command, **options)
        assert (code, expected in err) == (1, True), (command, err)
    assert connections[db_alias].introspection.table_names() == []


def test_on_the_command_line_a_broken_migration_prints_one_line(db_alias, tmp_path):
    shutil.copytree(SETS / "basic", tmp_path / "broken_set")
    broken = tmp_path / "broken_set" / "0005_broken.py"
    broken.write_text(BROKEN_MIGRATION)
    done = run_child(
        db_alias,
        "migrationstatus",
        MIGRATOR_TEST_SCENARIO="broken_set",
        PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}",
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"CommandError: Cannot load {broken}, line 4: expected ':'. "
        "Fix the file and run the command again.\n",
    )


# --lock-timeout ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon"])
def test_nonsense_lock_timeouts_are_refused_at_parse_time(db_alias, value):
    for command in (("safemigrate",), ("rollback", "--last")):
        out, err, code = run_command(*command, "--lock-timeout", value, database=db_alias)
        assert (out, code) == ("", 1)
        assert err.startswith(f"Error: argument --lock-timeout: {value!r} must be a ")
    assert connections[db_alias].introspection.table_names() == []


# The environment's spelling ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["Production", "PRODUCTION", " production", "production ", "production\u200b"]
)
def test_production_in_any_spelling_needs_yes(db_alias, settings, monkeypatch, spelling):
    monkeypatch.setenv("MIGRATOR_ENV", spelling)
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": None, "BACKUP_BEFORE_MIGRATE": False}
    out, err, code = run_command("safemigrate", "--noinput", database=db_alias)
    assert code == 3
    assert err.endswith("in production? No terminal to ask on; pass --yes to confirm.\n")
    assert connections[db_alias].introspection.table_names() == []
    status, _, _ = run_command("migrationstatus", "--json", database=db_alias)
    assert json.loads(status)["environment"] == "production"


@pytest.mark.parametrize("name", ["prod", "PRD", "live"])
def test_production_by_its_short_names_needs_yes(db_alias, monkeypatch, settings, name):
    monkeypatch.setenv("MIGRATOR_ENV", name)
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": None, "BACKUP_BEFORE_MIGRATE": False}
    _, err, code = run_command("safemigrate", "--noinput", database=db_alias)
    assert code == 3
    assert err.endswith(f"in {name.lower()}? No terminal to ask on; pass --yes to confirm.\n")
    assert connections[db_alias].introspection.table_names() == []


def test_an_invisible_environment_is_no_environment(db_alias, monkeypatch, settings):
    """MIGRATOR_ENV holding only a pasted zero-width space: DEBUG decides, as when unset."""
    monkeypatch.setenv("MIGRATOR_ENV", "\u200b")
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": None}
    settings.DEBUG = False
    status, _, _ = run_command("migrationstatus", "--json", database=db_alias)
    assert json.loads(status)["environment"] == "production"


def test_guarded_environments_are_compared_in_any_spelling(db_alias, settings):
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "ENVIRONMENT": "Staging ",
        "CONFIRM_ENVIRONMENTS": [" STAGING", "production"],
    }
    _, err, code = run_command("safemigrate", "--noinput", database=db_alias)
    assert code == 3
    assert err.endswith("in staging? No terminal to ask on; pass --yes to confirm.\n")
    assert connections[db_alias].introspection.table_names() == []


# A container's uid without a passwd entry ----------------------------------------------------

NOBODY_UID = 54321
# setuid(54321) and setgid(54321) as root, no supplementary groups. The one privilege kept
# is reading and searching any directory, for the interpreter under /root (mode 0700 here);
# writes are checked as uid 54321, so the database and backups are in a directory it owns.
AS_NOBODY = [
    "setpriv",
    f"--reuid={NOBODY_UID}",
    f"--regid={NOBODY_UID}",
    "--clear-groups",
    "--inh-caps=+dac_read_search",
    "--ambient-caps=+dac_read_search",
]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="becoming another uid needs root"
)
def test_a_uid_without_passwd_entry_and_no_user_runs_every_command(db_alias):
    with pytest.raises(KeyError):
        pwd.getpwuid(NOBODY_UID)
    home = Path(tempfile.mkdtemp(prefix="migrator-uid-"))
    try:
        os.chown(home, NOBODY_UID, NOBODY_UID)
        connection = connections[db_alias]
        if connection.vendor == "sqlite":  # a file the uid can write, in a directory it owns
            connection.close()
            connection.settings_dict["NAME"] = str(home / "db.sqlite3")
        no_user = dict.fromkeys(("USER", "LOGNAME", "LNAME", "USERNAME", "HOME", "MIGRATOR_ACTOR"))

        def as_nobody(*args: str) -> str:
            done = run_child(
                db_alias,
                *args,
                prefix=AS_NOBODY,
                MIGRATOR_TEST_BACKUP_DIR=str(home / "backups"),
                TMPDIR=str(home),
                **no_user,
            )
            assert done.returncode == 0, (args, done.stderr)
            return done.stdout

        assert as_nobody("shell", "-v", "0", "-c", "import os; print(os.getuid())") == "54321\n"
        as_nobody("safemigrate", "ledger", "0003", "--noinput")
        as_nobody("migrationstatus")
        as_nobody("backup")
        as_nobody("verifymigrations")
        as_nobody("rollback", "--last", "--noinput", "--no-backup")
        history = json.loads(as_nobody("migrationhistory", "--json"))
        assert [(run["command"], run["actor"]) for run in history["runs"]] == [
            ("rollback", f"uid {NOBODY_UID}"),
            ("safemigrate", f"uid {NOBODY_UID}"),
        ]
        assert applied(db_alias, "ledger") == []
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="becoming another uid needs root"
)
def test_the_actor_is_the_real_uid_not_a_stale_user_variable(db_alias):
    """A root shell's USER and LOGNAME, left behind by ``su`` or an image's ENV, name
    nobody: the audit names the uid that ran."""
    home = Path(tempfile.mkdtemp(prefix="migrator-uid-"))
    try:
        os.chown(home, NOBODY_UID, NOBODY_UID)
        connection = connections[db_alias]
        if connection.vendor == "sqlite":
            connection.close()
            connection.settings_dict["NAME"] = str(home / "db.sqlite3")
        done = run_child(
            db_alias,
            "safemigrate",
            "ledger",
            "0001",
            "--noinput",
            prefix=AS_NOBODY,
            TMPDIR=str(home),
            USER="root",
            LOGNAME="root",
            MIGRATOR_ACTOR=None,
        )
        assert done.returncode == 0, done.stderr
        assert Run.objects.using(db_alias).get().actor == f"uid {NOBODY_UID}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_actor_is_the_passwd_name_of_the_uid_and_migrator_actor_wins(db_alias, monkeypatch):
    monkeypatch.delenv("MIGRATOR_ACTOR", raising=False)
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    monkeypatch.setenv("MIGRATOR_ACTOR", "deploy-bot")
    assert run_command("safemigrate", "ledger", "0002", database=db_alias)[2] == 0
    actors = Run.objects.using(db_alias).order_by("id").values_list("actor", flat=True)
    assert list(actors) == [pwd.getpwuid(os.getuid()).pw_name, "deploy-bot"]


# A PostgreSQL server that accepts and never answers ---------------------------------------


class SilentServer:
    """A port that accepts connections and never says a word: a hung or overloaded server,
    or a port forwarded to nothing. libpq alone would wait for it without end."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with suppress(OSError):  # shut down
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        """Stop accepting before the descriptor is freed: an accept() still blocked on a
        closed descriptor took the connections of the next test's server that reused it."""
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.thread.join(timeout=30)
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def silent_postgres(silent_server, django_db_blocker, monkeypatch) -> Iterator[str]:
    """The PostgreSQL alias pointed at the silent server, waiting 2 s (its own OPTIONS)."""
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    with (
        repointed(
            "postgres",
            HOST="127.0.0.1",
            PORT=str(silent_server.port),
            OPTIONS={"connect_timeout": 2},
        ),
        django_db_blocker.unblock(),
    ):
        yield "postgres"


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("safemigrate", "--noinput"), 1),
        (("rollback", "--last", "--noinput"), 1),
        (("backup",), 6),
        (("restore", "20261204-120000-0123456789ab", "--noinput"), 6),
        (("migrationstatus",), 1),
        (("migrationhistory",), 1),
        (("verifymigrations",), 1),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_a_postgresql_server_that_never_answers_is_one_line_after_the_connect_timeout(
    silent_server, silent_postgres, command, code
):
    _, err, returncode = run_command(*command, database=silent_postgres)
    assert returncode == code
    assert len(err.splitlines()) == 1
    assert err.startswith(f"Cannot use database {silent_postgres!r}: ")
    assert "timeout expired (no answer within 2 s; OPTIONS['connect_timeout'] sets how long" in err
    assert len(silent_server.accepted) == 1  # waited once, not once per step
    assert "PGCONNECT_TIMEOUT" not in os.environ  # the process's environment as it was


@pytest.mark.parametrize("environment", [None, "3"], ids=["default", "PGCONNECT_TIMEOUT"])
def test_a_command_bounds_its_wait_for_a_postgresql_server_that_never_answers(
    silent_server, environment
):
    """Nothing in OPTIONS: 10 s, unless the environment says otherwise (a real child)."""
    done = run_child(
        "postgres",
        "safemigrate",
        "--noinput",
        timeout=120,  # libpq's own default: forever
        MIGRATOR_TEST_PGBOUNCER_PORT=str(silent_server.port),  # 'default' at that port
        PGCONNECT_TIMEOUT=environment,
    )
    assert done.returncode == 1, done.stderr
    assert f"timeout expired (no answer within {environment or 10} s;" in done.stderr
    assert len(done.stderr.splitlines()) == 1


# A read-only database (a replica, a file mounted read-only) -------------------------------


def make_read_only(alias: str) -> None:
    """SQLite: the file opened read-only; PostgreSQL: every transaction read-only, as on a
    hot standby."""
    connection = connections[alias]
    connection.close()
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = f"file:{name}?mode=ro"
    else:
        _admin_execute(alias, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')


@pytest.mark.parametrize("command", [("safemigrate",), ("safemigrate", "--fake")])
def test_a_read_only_database_is_one_line_and_nothing_is_written(db_alias, command):
    with connections[db_alias].cursor() as cursor:  # create the file (SQLite)
        cursor.execute("SELECT 1")
    make_read_only(db_alias)

    out, err, code = run_command(*command, database=db_alias)

    assert code == 1
    assert err.splitlines() == [
        f"Cannot write to database {db_alias!r}: {READ_ONLY[connections[db_alias].vendor]}. "
        "Point --database at a writable (primary) "
        "database, or grant this user write access, and run the command again."
    ]
    assert connections[db_alias].introspection.table_names() == []


# A backup directory this user cannot read ------------------------------------------------

# root reads any directory: the child drops that override, as a deploy user never had it.
WITHOUT_OVERRIDE = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


@pytest.mark.skipif(
    bool(WITHOUT_OVERRIDE) and not shutil.which("setpriv"), reason="root needs setpriv"
)
def test_an_unreadable_backup_directory_is_one_line_exit_6_and_nothing_is_lost(
    db_alias, backup_dir
):
    if WITHOUT_OVERRIDE and connections[db_alias].vendor == "postgresql":
        pytest.skip("the test server's socket is private to its uid, out of the child's reach")
    assert run_command("safemigrate", "ledger", "0002", database=db_alias)[2] == 0
    out, _, _ = run_command("backup", database=db_alias)
    backup_id = out.split(" to ")[1].split(" ")[0]
    before = sorted(path.name for path in backup_dir.iterdir())
    backup_dir.chmod(0)
    try:
        for command in [
            ("backup", "--list"),
            ("backup", "--show", backup_id),
            ("backup", "--verify", backup_id),
            ("backup", "--prune", "--keep", "0"),
            ("restore", backup_id),
        ]:
            done = run_child(
                db_alias,
                *command,
                prefix=WITHOUT_OVERRIDE,
                MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
            )
            assert (done.returncode, done.stdout) == (6, ""), (command, done.stderr)
            assert len(done.stderr.splitlines()) == 1, (command, done.stderr)
            assert done.stderr.startswith(
                f"CommandError: Cannot use the backup directory '{backup_dir}': [Errno 13] "
                f"Permission denied: '{backup_dir}"
            ), (command, done.stderr)
            assert done.stderr.endswith(
                "; check that this user may read and write it; nothing was changed.\n"
            ), (command, done.stderr)
        status = run_child(
            db_alias,
            "migrationstatus",
            prefix=WITHOUT_OVERRIDE,
            MIGRATOR_TEST_BACKUP_DIR=str(backup_dir),
        )
        assert (status.returncode, status.stderr) == (0, "")  # the rest of the status holds
        assert (
            f"  latest backup: unknown: Cannot use the backup directory '{backup_dir}': "
            "[Errno 13] Permission denied: "
        ) in status.stdout
    finally:
        backup_dir.chmod(0o700)
    assert sorted(path.name for path in backup_dir.iterdir()) == before
    assert applied(db_alias, "ledger") == ["0001_initial", "0002_entry_email"]


# A SQLite database in a directory this user cannot write ----------------------------------


@pytest.mark.skipif(
    bool(WITHOUT_OVERRIDE) and not shutil.which("setpriv"), reason="root needs setpriv"
)
@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_status_and_history_read_a_database_whose_lock_file_this_user_cannot_open(db_alias):
    """A user who may read the database but not the deploy user's lock file (0600): the
    readiness gate crashed with PermissionError, and so did migrationhistory with a killed
    run to mark (it takes the lock for that)."""
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    killed = Run.objects.using(db_alias).create(
        command="safemigrate", database=db_alias, pid=2**22 + 1, host="gone"
    )
    lock = Path(f"{connections[db_alias].settings_dict['NAME']}.migrator.lock")
    lock.chmod(0o000)
    try:
        status = run_child(db_alias, "migrationstatus", "--json", prefix=WITHOUT_OVERRIDE)
        history = run_child(db_alias, "migrationhistory", "--json", prefix=WITHOUT_OVERRIDE)
    finally:
        lock.chmod(0o600)
    assert (status.returncode, status.stderr) == (0, "")
    assert json.loads(status.stdout)["lock_holder"] is None
    assert (history.returncode, history.stderr) == (0, "")
    assert [run["outcome"] for run in json.loads(history.stdout)["runs"]][0] == "running"
    killed.refresh_from_db()
    assert killed.outcome == "running"  # left for whoever can take the lock


@pytest.mark.skipif(
    bool(WITHOUT_OVERRIDE) and not shutil.which("setpriv"), reason="root needs setpriv"
)
@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_a_sqlite_database_in_a_read_only_directory_is_one_line_and_one_document(db_alias):
    """No lock file can be made beside it (a directory mounted read-only, or owned by
    another user): a command that changes the database says so in one line, with its
    --json document; migrationstatus only reads it, and works. It was a PermissionError
    traceback from the lock file, and no document."""
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    database = Path(connections[db_alias].settings_dict["NAME"])
    connections[db_alias].close()
    Path(f"{database}.migrator.lock").unlink()
    directory = database.parent
    directory.chmod(0o555)
    changing = [
        ("safemigrate", "--noinput"),
        ("rollback", "--last", "--noinput"),
        ("verifymigrations", "--baseline"),
    ]
    try:
        done = {
            command: run_child(db_alias, *command, "--json", prefix=WITHOUT_OVERRIDE)
            for command in [*changing, ("migrationstatus",)]
        }
    finally:
        directory.chmod(0o755)
    said = (
        f"Cannot open the lock file '{database}.migrator.lock' beside the database: "
        f"Permission denied. Let this user write to '{directory}' (SQLite writes its journal "
        "there too), and run the command again."
    )
    for command in changing:
        document = json.loads(done[command].stdout)  # one document
        assert (done[command].returncode, document["error"], document["exit_code"]) == (
            1,
            said,
            1,
        ), command
        assert done[command].stderr.splitlines()[-1] == f"CommandError: {said}", command
    status = done[("migrationstatus",)]
    assert (status.returncode, status.stderr) == (0, "")
    assert json.loads(status.stdout)["lock_holder"] is None
    assert sorted(path.name for path in directory.iterdir()) == ["db.sqlite3"]
    assert applied(db_alias, "ledger") == ["0001_initial"]


# Output nobody reads -------------------------------------------------------------------------

LEDGER = [
    "0001_initial",
    "0002_entry_email",
    "0003_backfill_email",
    "0004_remove_entry_memo",
    "0005_normalise_account_names",
]


def unread(alias: str, *args: str, stdin: int = subprocess.DEVNULL, **env: str | None):
    """Run a command whose stdout's reader is gone before its first line (``| head -0``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            django_admin(*args),
            env=child_env(alias, **env),
            cwd=ROOT,
            stdin=stdin,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
def test_a_run_whose_output_nobody_reads_applies_everything_and_exits_0(db_alias, buffered):
    """It used to stop at its first line with a BrokenPipeError traceback (or, buffered,
    exit 120 on the interpreter's last flush)."""
    done = unread(
        db_alias, "safemigrate", "--noinput", "-v", "2", PYTHONUNBUFFERED=None if buffered else "1"
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert applied(db_alias, "ledger") == LEDGER
    assert Run.objects.using(db_alias).get(command="safemigrate").outcome == "succeeded"


def test_a_read_only_command_whose_output_nobody_reads_keeps_its_exit_code(db_alias):
    assert unread(db_alias, "safemigrate", "--plan").returncode == 0
    done = unread(db_alias, "migrationstatus", "--check")  # pending migrations: exit 1

    assert (done.returncode, done.stderr) == (
        1,
        "CommandError: Database 'default' is not ready: migrations are pending.\n",
    )
    assert "ledger_entry" not in connections[db_alias].introspection.table_names()


def test_a_question_nobody_can_read_is_not_answered(db_alias):
    """Production asks on a terminal; with stdout gone the question is never seen, so the
    run is refused at once instead of waiting for an answer that cannot come."""
    terminal, stdin = os.openpty()
    try:
        done = unread(
            db_alias,
            "safemigrate",
            "--no-backup",
            stdin=stdin,
            MIGRATOR_TEST_ENVIRONMENT="production",
        )
    finally:
        os.close(stdin)
        os.close(terminal)

    assert (done.returncode, done.stderr) == (3, "CommandError: Cancelled; nothing was changed.\n")
    assert "ledger_entry" not in connections[db_alias].introspection.table_names()


def with_closed(alias: str, fds: tuple[int, ...], *args: str, **env: str | None):
    """Run a command started with file descriptors ``fds`` closed (``<&-``, ``>&-``)."""
    return subprocess.run(
        django_admin(*args),
        env=child_env(alias, **env),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: [os.close(fd) for fd in fds],
    )


@pytest.mark.parametrize("fds", [(0,), (1,), (1, 2)], ids=["stdin", "stdout", "stdout-stderr"])
def test_a_run_started_with_a_standard_stream_closed_applies_everything(db_alias, fds):
    """Python's sys.stdin or sys.stdout is then None: asking whether stdin was a terminal,
    or the first line of output, was an AttributeError traceback."""
    done = with_closed(db_alias, fds, "safemigrate")

    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert applied(db_alias, "ledger") == LEDGER
    assert Run.objects.using(db_alias).get(command="safemigrate").outcome == "succeeded"


def test_production_with_stdin_closed_refuses_as_without_a_terminal(db_alias):
    done = with_closed(db_alias, (0,), "safemigrate", MIGRATOR_TEST_ENVIRONMENT="production")

    assert done.returncode == 3, done.stderr
    assert done.stderr.endswith(" No terminal to ask on; pass --yes to confirm.\n")
    assert "ledger_entry" not in connections[db_alias].introspection.table_names()


# A database router that keeps migrator off the database ----------------------------------


class MigratorElsewhere:
    """Keeps app 'migrator' off one alias (one that hosts some apps only, or a replica)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def allow_migrate(self, db, app_label, **hints):
        return False if db == self.alias and app_label == "migrator" else None


def test_a_router_keeping_migrator_off_the_database_is_refused_before_anything(db_alias, settings):
    """Plain migrate works there (migrator's migrations recorded, their tables not made):
    safemigrate printed them "OK", then failed on the missing tables, on every run."""
    settings.DATABASE_ROUTERS = [MigratorElsewhere(db_alias)]
    said = (
        f"DATABASE_ROUTERS keep app 'migrator' off database {db_alias!r} "
        "(tests.test_hardening.MigratorElsewhere.allow_migrate), where migrator keeps its "
        "lock, hashes and audit; let that router allow app 'migrator' on "
        f"{db_alias!r}, or migrate that database with plain 'migrate'."
    )
    for command in [("safemigrate",), ("safemigrate", "ledger", "--plan"), ("rollback", "--last")]:
        assert run_command(*command, database=db_alias) == ("", f"{said}\n", 1), command
    out, err, code = run_command("safemigrate", "--json", database=db_alias)
    assert (json.loads(out)["error"], err, code) == (said, f"{said}\n", 1)
    assert connections[db_alias].introspection.table_names() == []  # nothing made
    out, err, code = run_command("verifymigrations", "--baseline", database=db_alias)
    assert (code, err) == (1, f"{said}\n")
    assert "migrator_run" not in connections[db_alias].introspection.table_names()

    settings.DATABASE_ROUTERS = []
    assert run_command("safemigrate", database=db_alias)[2] == 0


# Values longer than their audit columns ---------------------------------------------------


def test_a_long_migrator_actor_is_cut_to_its_column(db_alias, monkeypatch):
    """A CI job's description of who ran (pipeline URL, who triggered it) may be long."""
    who = "deploy pipeline https://ci.example.com/group/project/-/pipelines/123456789 " * 3
    monkeypatch.setenv("MIGRATOR_ACTOR", who)
    out, err, code = run_command("safemigrate", "ledger", "0001", "--json", database=db_alias)
    assert (code, json.loads(out)["outcome"]) == (0, "succeeded"), err
    assert Run.objects.using(db_alias).get().actor == who[:150]


def test_a_long_environment_name_is_refused_at_once_in_one_line(db_alias, monkeypatch, settings):
    name = "production-eu-west-1-blue-green-canary-2026"  # 43 characters
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": name}
    out, err, code = run_command("safemigrate", "--yes", "--json", database=db_alias)
    message = (
        f"MIGRATOR['ENVIRONMENT'] is {name!r}: an environment name has at most 40 characters, "
        "this one 43. Fix MIGRATOR['ENVIRONMENT'] in your settings."
    )
    assert (code, err) == (1, message + "\n")
    assert (json.loads(out)["error"], json.loads(out)["exit_code"]) == (message, 1)
    _, err, code = run_command("check")
    assert code == 1
    assert f"(migrator.E011) MIGRATOR['ENVIRONMENT'] is {name!r}: an environment" in err

    monkeypatch.setenv("MIGRATOR_ENV", name)
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": None}
    assert run_command("rollback", "ledger", "zero", "--yes", database=db_alias)[1:] == (
        f"MIGRATOR_ENV is {name!r}: an environment name has at most 40 characters, "
        "this one 43. Shorten it.\n",
        1,
    )
    assert connections[db_alias].introspection.table_names() == []
