"""What every migrator command shares: Django's options, errors as exit codes, output."""

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connections
from django.db.migrations.exceptions import MigrationSchemaMissing

from migrator import checks, integrity, lifecycle, locking, operations, scratch, secrets, timeouts
from migrator.audit import outcome_of
from migrator.backup.base import first_line
from migrator.conf import direct_alias, get_settings, seconds
from migrator.exceptions import LockNotAcquired, MigratorError, RunInterrupted
from migrator.planning import PlannedMigration, SqlStep
from migrator.risks import SEVERITY_RANK, Finding, Severity
from migrator.types import ProgressEvent, RunOptions


def seconds_argument(value: str) -> float:
    """argparse type of ``--lock-timeout``: nan, inf and negatives exit 1 at parse time."""
    try:
        return seconds(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} {exc}") from None


def read_answer(stream: Any) -> str:
    """One line typed on a terminal; Ctrl-C at any moment is KeyboardInterrupt.

    A plain ``readline()`` loses a SIGINT that lands after Python last checked for signals
    but before ``read()`` blocks: the handler only runs once ``read()`` returns, which a
    Ctrl-C (whose input the terminal discards) never makes it do. The signal's wakeup fd
    is waited on beside the terminal, so a signal that came at any time ends the wait.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (tests)
        return stream.readline()
    if threading.current_thread() is not threading.main_thread():
        return stream.readline()  # signals, and their wakeup fd, belong to the main thread
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    previous = signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
    try:
        while fd not in select.select([fd, wakeup_read], [], [])[0]:
            os.read(wakeup_read, 512)  # a signal: its handler raised, or it is ignored
        return stream.readline()
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wakeup_read)
        os.close(wakeup_write)


class Output(OutputWrapper):
    """A command's stdout or stderr that outlives its reader (``| head``, a log pipe that
    died): from the first write that finds the pipe closed, output goes nowhere and the
    command goes on. A run must not stop between two migrations because nobody reads its
    progress, nor exit 120 on the interpreter's last flush; its record keeps what it did.
    A stream closed before the command started (``>&-``: Python's is None) is gone from
    the start."""

    def __init__(self, out: Any, ending: str = "\n") -> None:
        super().__init__(out, ending)
        self.stream, self.gone = out, out is None  # Django 4.2's wrapper hides fileno()

    def write(self, msg: str = "", style_func: Any = None, ending: str | None = None) -> None:
        if not self.gone:
            with self._unless_gone():
                super().write(msg, style_func, ending)

    def flush(self) -> None:
        with self._unless_gone():
            super().flush()

    @contextmanager
    def _unless_gone(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            self.gone = True
            # What is still buffered, and the flush at exit, go to /dev/null instead.
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)


@contextmanager
def _terminate_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM raises KeyboardInterrupt meanwhile, as Ctrl-C does, instead of killing the
    command without a word (or a --json document); yields the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def terminated(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def unusable_database(exc: DatabaseError, alias: str, code: int = 1) -> CommandError:
    """One line, no secret, for a database that cannot be used before anything changed:
    a server that is down, wrong credentials, a SQLite file that is locked or no database.
    """
    named, configured = repr(alias), "the DATABASES settings are"
    if (used := direct_alias(alias)) != alias:  # the connection that failed
        named = f"{used!r} (MIGRATOR['DIRECT_DATABASES'] for {alias!r})"
        configured = "MIGRATOR['DIRECT_DATABASES'] is"
    reason = secrets.mask(first_line(exc))
    if used in connections:
        reason += timeouts.unanswered(connections[used], reason)
    if used not in connections or connections[used].vendor != "sqlite":
        check = f"the server is up and {configured} right"
    elif reason.startswith("database is locked"):  # one writer at a time
        timeout = connections[used].settings_dict.get("OPTIONS", {}).get("timeout", 5)
        return CommandError(
            f"Database {named} is locked: another connection kept writing to the SQLite file "
            f"for {timeout} s (OPTIONS['timeout']). Run the command again once it is done, "
            "or raise that timeout.",
            returncode=LockNotAcquired.exit_code,
        )
    else:
        check = f"{configured} right and the file is an intact SQLite database"
    return CommandError(
        f"Cannot use database {named}: {reason}. Check that {check}.", returncode=code
    )


class MigratorCommand(BaseCommand):
    """Base command: ``--database``, ``--noinput``, ``--json``; MigratorError -> exit code."""

    requires_system_checks: list[str] = []  # run in handle() for the chosen database
    stealth_options = ("stdin",)
    prompts = False  # commands that ask for confirmation set this
    changes = False  # commands that change a database under the run lock set this
    unreachable_code = 1  # the exit code of a database whose server does not answer
    interrupted_code = RunInterrupted.exit_code  # Ctrl-C or SIGTERM outside a run
    locks = False  # other commands that take the run lock (restore): --lock-timeout only
    batch_progress_interval = 10.0  # seconds between batch progress lines off a terminal
    _open_line = _reopen_line = ""  # "  Applying x..." awaiting its OK, and after a bar
    _next_progress_line = 0.0

    def __init__(self, stdout: Any = None, stderr: Any = None, **style: bool) -> None:
        super().__init__(stdout, stderr, **style)
        error_style = self.stderr.style_func
        self.stdout, self.stderr = Output(stdout or sys.stdout), Output(stderr or sys.stderr)
        self.stderr.style_func = error_style

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help='Database to work on. Defaults to the "default" database.',
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Write one JSON document to stdout; progress goes to stderr.",
        )
        if self.changes or self.locks:
            parser.add_argument(
                "--lock-timeout",
                type=seconds_argument,
                default=None,
                metavar="SECONDS",
                help="How long to wait for another run's lock before exiting with 4.",
            )
        if self.changes:
            parser.add_argument(
                "--allow-data-loss",
                action="store_true",
                help="Allow steps that destroy data without asking.",
            )
        if self.prompts:
            parser.add_argument(
                "--noinput",
                "--no-input",
                action="store_false",
                dest="interactive",
                help="Never prompt; a change that needs confirmation then fails with exit 3.",
            )
            parser.add_argument(
                "--yes",
                action="store_true",
                dest="assume_yes",
                help="Confirm changes in a guarded environment (production) without a prompt.",
            )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Bad arguments exit 1 as the contract says, not argparse's 2 (integrity's code);
        with ``--json`` among them, stdout still carries the one failure document. Options
        are spelt in full: a script's ``--jso`` would be ``--json`` only while it parses."""
        kwargs.setdefault("allow_abbrev", False)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_args, given = parser.parse_args, []

        def remembering(args: Any = None, namespace: Any = None) -> argparse.Namespace:
            given[:] = sys.argv[2:] if args is None else args
            return parse_args(args, namespace)

        def error(message: str) -> None:
            if not parser.called_from_command_line:
                raise CommandError(f"Error: {message}")
            if "--json" in given:
                failure = CommandError(message, returncode=1)
                self.write_failure(failure, {"database": _database_in(given)})
            parser.print_usage(sys.stderr)
            parser.exit(1, f"{parser.prog}: error: {message}\n")

        parser.parse_args, parser.error = remembering, error
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        """Django's, but a failure shown with ``--traceback`` is masked and exits with its own
        code (Django re-raises it, unmasked, exit 1), and so is a bug's traceback."""
        try:
            super().run_from_argv(argv)
        except Exception as exc:  # noqa: BLE001  (shown, then the process exits)
            text = "".join(traceback.format_exception(exc))
            self.stderr.write(secrets.mask(text), ending="")
            sys.exit(exc.returncode if isinstance(exc, CommandError) else 1)

    def execute(self, *args: Any, **options: Any) -> str | None:
        self.stdin = options.get("stdin", sys.stdin)
        self.json_written = False
        try:
            with _terminate_as_interrupt() as terminated:
                try:
                    return self.execute_converting_errors(*args, **options)
                except KeyboardInterrupt as exc:  # a run converts its own (lifecycle)
                    by = "SIGTERM" if terminated else "Ctrl-C"
                    error = CommandError(
                        f"Interrupted by {by}; run the command again to finish.",
                        returncode=self.interrupted_code,
                    )
                    error.outcome = outcome_of(exc)  # type: ignore[attr-defined]
                    raise error from exc
        except BaseException as exc:
            if self._open_line:  # "  Applying x..." ends before the error below it
                self.progress_out.write("")
                self._open_line = ""
            if isinstance(exc, CommandError) and options.get("as_json") and not self.json_written:
                self.write_failure(exc, options)
            raise
        finally:
            self.stdout.flush()  # a closed pipe found now, not by the interpreter's exit

    def execute_converting_errors(self, *args: Any, **options: Any) -> str | None:
        """Django's execute, with every failure a one-line CommandError carrying its exit code."""
        try:
            with (
                integrity.graph_errors(),  # a migration file that does not load: name it
                timeouts.bounded_connects(),  # a server that never answers: an error
            ):
                return super().execute(*args, **options)
        except MigratorError as exc:
            error = CommandError(secrets.mask(str(exc)), returncode=exc.exit_code)
            error.outcome = outcome_of(exc)  # type: ignore[attr-defined]
            error.report = getattr(exc, "report", None)  # type: ignore[attr-defined]
            raise error from exc
        except ImproperlyConfigured as exc:  # DATABASES: a URL that names no database, ...
            raise CommandError(f"{first_line(exc)}.") from exc
        except MigrationSchemaMissing as exc:  # a replica, a file opened read-only
            raise CommandError(
                f"Cannot write to database {options.get('database', DEFAULT_DB_ALIAS)!r}: "
                f"{first_line(exc.__context__ or exc)}. Point --database at a writable (primary) "
                "database, or grant this user write access, and run the command again."
            ) from exc
        except DatabaseError as exc:
            if type(exc) not in (DatabaseError, OperationalError):  # a failed query: a bug
                raise
            raise unusable_database(exc, options.get("database", DEFAULT_DB_ALIAS)) from exc

    def handle(self, *args: Any, **options: Any) -> None:
        if options["database"] not in connections:
            raise CommandError(
                f"Unknown database {options['database']!r}; configured: {', '.join(connections)}."
            )
        get_settings()  # a bad MIGRATOR setting: one line, before the checks' report
        scratch.sweep()  # temporary files that killed runs left behind
        asked, options["database"] = options["database"], direct_alias(options["database"])
        if asked != options["database"]:
            locking.require_same_database(connections[asked], connections[options["database"]])
        if self.prompts:  # a changing command: refuse a pooled connection before anything
            connection = connections[options["database"]]
            try:
                locking.require_own_session(connection)
            except DatabaseError as exc:  # a server that is down: the command says so
                if timeouts.unanswered(connection, str(exc)):  # but waiting twice is no better
                    raise unusable_database(exc, asked, self.unreachable_code) from exc
        if self.changes:  # before a plan, a prompt or the lock, not under it
            lifecycle.require_own_tables_allowed(connections[options["database"]])
        if not options["skip_checks"]:
            # Integrity is verified by the command itself, with exit 2 and a fuller report.
            with checks.integrity_checks_deferred():
                self.check(databases=[options["database"]])
        self.verbosity = options["verbosity"]
        self.as_json = options["as_json"]
        self.progress_out = self.stderr if self.as_json else self.stdout
        # --json: what migrations and signal handlers print() goes to stderr, not into the
        # document (self.stdout keeps the stream it was made with).
        with (
            redirect_stdout(sys.stderr) if self.as_json else nullcontext(),
            _working_through(asked, options["database"]),
        ):
            self.run(*args, **options)

    def run(self, *args: Any, **options: Any) -> None:
        raise NotImplementedError

    def run_options(
        self, options: dict[str, Any], target: dict[str, Any], *flags: str
    ) -> RunOptions:
        """RunOptions from the flags of a changing command; target and flags go to the audit."""
        flags = ("lock_timeout", "backup", "assume_yes", "allow_data_loss", "interactive", *flags)
        chosen = {flag: options[flag] for flag in flags}
        return RunOptions(
            database=options["database"],
            verbosity=0 if self.as_json else self.verbosity,
            arguments={**target, **chosen},
            **chosen,
        )

    def render_sql(self, steps: list[SqlStep], *, nothing: str) -> None:
        """Each migration's SQL under its name; steps without SQL are named as comments."""
        if self.as_json:
            self.write_json({"sql": [step.as_dict() for step in steps]})
            return
        if not steps:
            self.stdout.write(nothing)
        for step in steps:
            self.stdout.write(self.style.MIGRATE_HEADING(f"-- {step.migration}"))
            for statement in step.statements:
                self.stdout.write(statement)
            for operation in step.no_sql:
                self.stdout.write(self.style.NOTICE(f"-- No SQL: {operation}"))

    def write_json(self, document: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(document, sort_keys=True, default=str))
        self.json_written = True

    def write_document(self, document: dict[str, Any], error: Exception | None) -> None:
        """``--json``: the command's document; when the command fails with ``error``, that
        error is raised carrying it, so that it is the failure's document (``write_failure``)."""
        if error is None:
            self.write_json(document)
            return
        error.report = document  # type: ignore[attr-defined]
        raise error

    def write_failure(self, error: CommandError, options: dict[str, Any]) -> None:
        """``--json``: a failure is one document too, with the outcome, error and exit code."""
        report = getattr(error, "report", None)  # a report object, or a command's document
        if report is None:
            document = {}
        elif isinstance(report, dict):
            document = dict(report)
        else:
            document = report.as_dict()
        outcome = getattr(error, "outcome", "failed")
        document.update(
            command=self.command_name(),
            database=options.get("database", DEFAULT_DB_ALIAS),
            # a refusal that validation recorded as such (the audit says refused too)
            outcome="refused" if document.get("outcome") == "refused" else outcome,
            error=str(error),
            exit_code=error.returncode,
        )
        self.write_json(document)

    def warn_unneeded_identity(self, identity: str | None, backup_id: str, encrypted: bool) -> None:
        """``--identity`` given for a plaintext backup: it did no harm, but say it went unused."""
        if identity and not encrypted:
            self.stderr.write(
                self.style.WARNING(f"--identity was not used: backup {backup_id} is not encrypted.")
            )

    def command_name(self) -> str:
        return type(self).__module__.rpartition(".")[2]

    def show_progress(self, event: ProgressEvent) -> None:
        """Render a library progress event as Django's ``migrate`` does."""
        if self.verbosity < 1:
            return
        # a run found killed is a warning beside the output, not part of it
        out = self.stderr if event.action == "interrupted_found" else self.progress_out
        if event.action in {"apply_start", "unapply_start"}:
            verb = "Applying" if event.action == "apply_start" else "Unapplying"
            self._open_line = f"  {verb} {event.migration}..."
            out.write(self._open_line, ending="")
            out.flush()
        elif event.action in {"apply_success", "unapply_success"}:
            text = " FAKED" if event.fake else " OK"
            out.write(self._reopen_line + self.style.SUCCESS(text) + f" ({event.duration:.3f}s)")
            self._open_line = self._reopen_line = ""
        elif event.action == "batch_progress":
            self.show_batch_progress(out, event)
        elif event.action == "risks":
            self.show_risks(out, event)
        elif event.action == "retry":
            if self._open_line:  # end "Applying x..." first; repeat it before its OK
                out.write("")
            out.write(self.style.NOTICE(f"    {event.message}"))
            if self._open_line:
                out.write(self._open_line, ending="")
                out.flush()
        elif event.message:
            out.write(
                self.style.NOTICE(event.message)
                if event.action in {"lock_wait", "warning", "interrupted_found"}
                else event.message
            )

    def show_risks(self, out: Any, event: ProgressEvent) -> None:
        """The findings to review before a run; info ones too at verbosity 2."""
        minimum = "info" if self.verbosity >= 2 else event.data["minimum"]
        if minimum == "info" or event.data["to_review"]:
            out.write(self.style.WARNING(event.message))
            self.write_plan(event.data["plan"], out=out, minimum=minimum)

    def write_plan(
        self, plan: list[PlannedMigration], *, out: Any = None, minimum: Severity = "info"
    ) -> None:
        """Migrations, operations and risk findings, then one hint per app and code.

        With ``minimum`` above "info", only operations with such findings are shown. Muted
        findings (``MIGRATOR["APP_RISKS"]``) are left out; ``--json`` keeps them.
        """
        out = out or self.stdout
        floor = SEVERITY_RANK[minimum]
        hints: dict[tuple[str, str], tuple[str, int]] = {}
        for migration in plan:
            shown = [
                (op, [f for f in op.findings if SEVERITY_RANK[f.severity] >= floor and not f.muted])
                for op in migration.operations
            ]
            if minimum != "info":
                shown = [(operation, findings) for operation, findings in shown if findings]
                if not shown:
                    continue
            out.write(self.style.MIGRATE_LABEL(f"  {migration.label}") + _stage(migration))
            for operation, findings in shown:
                out.write(f"    {operation.description}")
                for finding in findings:
                    self.write_finding(out, finding)
                    key = (migration.app_label, finding.code)
                    hints[key] = (finding.hint, hints.get(key, ("", 0))[1] + 1)
        if hints:
            out.write("Hints, one per app and code:")
        for (app_label, code), (hint, count) in hints.items():
            out.write(
                f"  {code} in {app_label} ({count} finding{'s' if count > 1 else ''}): {hint}"
            )

    def write_finding(self, out: Any, finding: Finding) -> None:
        """``ML101 danger: message`` and its acknowledgement, under its operation."""
        style = {"danger": self.style.ERROR, "warning": self.style.WARNING}.get(
            finding.severity, str
        )
        out.write(style(f"      {finding.code} {finding.severity}: {finding.message}"))
        if finding.acknowledged:
            out.write(f"        acknowledged: {finding.acknowledged}")

    def show_batch_progress(self, out: Any, event: ProgressEvent) -> None:
        """A bar redrawn in place on a terminal; elsewhere the first, last and interval lines."""
        if self._open_line:  # end "Applying x..." first; repeat it before its OK
            out.write("")
            self._reopen_line, self._open_line, self._next_progress_line = self._open_line, "", 0.0
        data, now = event.data, time.monotonic()
        if out.isatty():
            bar = operations.progress_bar(data)
            out.write(f"\r    {bar}", ending="\n" if data["finished"] else "")
            out.flush()
        elif data["finished"] or now >= self._next_progress_line:
            out.write(f"    {operations.describe_progress(data)}")
            self._next_progress_line = now + self.batch_progress_interval

    def confirm_callback(self, options: dict[str, Any]):
        """A prompt that asks for the database's name, or None when nobody can answer."""
        if not options.get("interactive", False) or self.stdin is None or not self.stdin.isatty():
            return None  # None: stdin closed before the command started (``<&-``)

        def confirm(question: str, expected: str) -> bool:
            out = self.progress_out  # with --json, stdout is the document's
            try:  # Ctrl-C while the question is still being written is a "no" too
                out.write(f"{question}\nType {expected!r} to continue: ", ending="")
                out.flush()
                if getattr(out, "gone", False):
                    return False  # a question nobody can read gets no answer
                answer = read_answer(self.stdin)
            except KeyboardInterrupt:
                out.write("")
                return False
            return answer.strip() == expected

        return confirm


@contextmanager
def _working_through(asked: str, direct: str) -> Iterator[None]:
    """While a command works through the ``DIRECT_DATABASES`` alias of the one it was
    asked for, that alias is the same connection: a data migration's ``Model.objects``
    (the default alias) runs in the migration's transaction, under its timeouts, and in
    testmigrations' test database, as under plain ``migrate``."""
    if asked == direct:
        yield
        return
    own = connections[asked]
    connections[asked] = connections[direct]
    try:
        yield
    finally:
        connections[asked] = own


def _database_in(args: list[str]) -> str:
    """The ``--database`` of arguments that did not parse (for their failure document)."""
    for index, arg in enumerate(args):
        if arg.startswith("--database="):
            return arg.partition("=")[2]
        if arg == "--database" and index + 1 < len(args):
            return str(args[index + 1])
    return DEFAULT_DB_ALIAS


def _stage(migration: PlannedMigration) -> str:
    """' [after_deploy]' after a planned migration's label; for an undo, when it may run."""
    if migration.stage is None:
        return ""
    if migration.backwards:
        when = "wait until the old code is back" if migration.waits_for_old_code else "any time"
        return f" [{migration.stage.stage}: undo {when}]"
    return f" [{migration.stage.stage}]"
