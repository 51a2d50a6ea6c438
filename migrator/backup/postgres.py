"""Native PostgreSQL backups: ``pg_dump`` custom format, restored in one transaction.

Connection details come from Django's own ``get_connection_params()`` (NAME, USER, HOST,
PORT and everything in OPTIONS: a socket directory given as ``OPTIONS["host"]``, sslmode,
sslrootcert, ...) and reach the tools through libpq's environment variables; the password
goes into a 0600 passfile in a private temporary directory. The command lines hold no
connection detail at all, and ``--no-password`` makes a missing password an error
instead of a prompt.

``pg_dump`` writes the archive straight to the destination file. A restore feeds one
``psql`` session (``ON_ERROR_STOP``) one transaction: a prelude that opens it and drops
every relation, large object, function and type (so that those created after the backup
go too, and the database ends up as it was backed up), the script ``pg_restore --file=-``
writes (without the entries of the extensions the database already has, which stay as
they are), and a postlude that merges the live run audit back and ends with the COMMIT.
Any error, or a ``pg_restore`` that stops early, or migrator dying, ends the session
before COMMIT: the server rolls everything back. The script of an archive that may
hold large objects (its manifest does not say it holds none) goes through this process,
so that the COMMIT ``pg_restore`` writes can be taken out (``_relay``).
"""

import errno
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, TypeVar

from django.db import DatabaseError

from migrator import cancelling, children, interrupts, scratch, sessions, timeouts
from migrator.backup import scratchdb, swap
from migrator.backup.base import (
    OWN_RELATIONS,
    PSQL_OPTIONS,
    BackupEngine,
    PlaintextOpener,
    Statement,
    first_line,
    lock_wait_failed,
    locks_not_granted,
    scrub,
    server_version,
)
from migrator.backup.manifest import Manifest
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed
from migrator.types import ProgressCallback, ProgressEvent

logger = logging.getLogger(__name__)
T = TypeVar("T")

# libpq connection keywords and the environment variables that carry them.
LIBPQ_ENVIRONMENT: Final = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "gsslib": "PGGSSLIB",
    "krbsrvname": "PGKRBSRVNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# Django's and psycopg's own options, and libpq ones that the tools do not need.
NOT_FOR_TOOLS: Final = frozenset(
    {
        "client_encoding",  # would change pg_dump's output encoding
        "cursor_factory",
        "context",
        "prepare_threshold",
        "server_side_binding",
        "isolation_level",
        "assume_role",
        "pool",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
# Seconds between looks at whether psql reached the postlude: every look past the moment
# adds to the restore (index builds take a while after pg_restore exits), a look is one
# failed open(2).
FIRST_POLL: Final = 0.002
LONGEST_POLL: Final = 0.02
SWAPPING: Final = "Restoring with pg_restore --jobs {jobs} into a new database, to swap in..."
SERIAL: Final = "Restoring in one transaction, not in parallel into a new database"
VERSION: Final = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# What ``pg_restore --single-transaction --file=-`` writes after its COMMIT: comments and,
# from PostgreSQL 16.10 and 17.6 on, ``\unrestrict <key>``. The relay holds back the last
# HELD_BACK bytes of the script, which hold all of it.
SCRIPT_END: Final = re.compile(rb"\nCOMMIT;\n((?:[ \t]*\n|--[^\n]*\n|\\unrestrict [^\n]*\n)*)\Z")
HELD_BACK: Final = 4096
# What the relay writes after the script: psql, having run it all, writes the file
# READY in its working directory (the restore's private directory).
READY: Final = "ready"
SAY_READY: Final = f"\\o {READY}\n\\qecho ready\n\\o\n".encode()
RELAY_CHUNK: Final = 1 << 16

# The DROPs of the functions, procedures, aggregates, types and domains outside the system
# schemas that no extension owns and no other object makes (a range type's constructors, a
# multirange), of the roles this one is a member of (another's it may not drop; a
# superuser: all): made at once, before a cascade can remove any. pg_restore --clean drops (and
# then makes) those the archive holds, but one made after the backup would block its drop
# of the schema, extension or type it depends on ("other objects depend on it").
OWN_ROUTINES_AND_TYPES: Final = """
    SELECT coalesce(pg_catalog.array_agg(command ORDER BY routine DESC), ARRAY[]::text[])
    FROM (
      SELECT true, format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::pg_catalog.regprocedure)
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
        AND pg_catalog.pg_has_role(p.proowner, 'USAGE')
        AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
            AND d.deptype IN ('e', 'i'))
      UNION ALL
      SELECT false, format('DROP %s IF EXISTS %s CASCADE',
        CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::pg_catalog.regtype)
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
      WHERE t.typtype IN ('c', 'd', 'e', 'r')
        AND (t.typrelid = 0 OR EXISTS (
          SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
        AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
        AND pg_catalog.pg_has_role(t.typowner, 'USAGE')
        AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
            AND d.deptype IN ('e', 'i'))
    ) AS own(routine, command)"""
# The prelude's work, after it opens the transaction: locks the tables and views a restore
# replaces as a migration's are, then drops the relations it replaces (OWN_RELATIONS; the
# drops lock what LOCK TABLE cannot: materialized views, sequences, foreign tables, so they
# go first), every large object (one made after the backup would outlive the rows that
# referenced it) and OWN_ROUTINES_AND_TYPES, so the restored database holds exactly what
# the archive holds (but schemas and extensions made after the backup). Each wait
# is bounded by lock_timeout (PG_LOCK_TIMEOUT, set before it), retried LOCK_RETRIES times
# with the same back-off, each failed attempt letting go of what it had locked and dropped.
# A session that holds on (a long transaction) fails the restore, nothing changed, instead
# of leaving it waiting without end while the tables it has already dropped queue every
# query behind it. The last failure names the relation, after its oid (which finds its
# holders whatever characters its name holds).
LOCK_FAILED: Final = "migrator: restore could not lock"
LOCK_FAILED_ON: Final = re.compile(rf"{LOCK_FAILED} (\d+) (.+)$")
# The extensions a database has (but plpgsql, which pg_dump leaves out), by name and as
# pg_restore --list names them in a COMMENT entry (quoted where needed).
KEPT_EXTENSIONS: Final = """
    SELECT extname, pg_catalog.quote_ident(extname) FROM pg_catalog.pg_extension
    WHERE extname <> 'plpgsql'"""
# An extension's entries in ``pg_restore --list``: "<dump id>; <catalog oid> <oid>
# EXTENSION - <name> <owner>" and "... COMMENT - EXTENSION <name> <owner>" (no owner).
EXTENSION_ENTRY: Final = re.compile(r"\d+; \d+ \d+ (?:EXTENSION -|COMMENT - EXTENSION) (.+?) ?$")
# One schema of a search_path setting: "Quoted ""Name""" or bare.
SEARCH_PATH_ITEM: Final = re.compile(r'"((?:[^"]|"")*)"|([^,\s]+)')
# Where psql says an error was: "psql:/tmp/.../prelude.sql:63: " (a private file).
PSQL_WHERE: Final = re.compile(r"^psql:.*?:\d+: ")
BOUND_LOCKS: Final = "SET LOCAL lock_timeout = '{lock_timeout}';\n"
REPLACE_CONTENTS: Final = f"""
DO $migrator$
DECLARE item record; dropping text; attempt int := 0;
BEGIN
  LOOP
    BEGIN
      FOR item IN {OWN_RELATIONS} AND c.relkind IN ('r', 'p', 'v')
      LOOP
        EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', item.nspname, item.relname);
      END LOOP;
      FOR item IN {OWN_RELATIONS} ORDER BY c.relkind NOT IN ('m', 'S', 'f')
      LOOP
        EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE',
          CASE item.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
            WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
          item.nspname, item.relname);
      END LOOP;
      PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
      FOREACH dropping IN ARRAY ({OWN_ROUTINES_AND_TYPES})
      LOOP
        EXECUTE dropping;
      END LOOP;
      RETURN;
    EXCEPTION WHEN lock_not_available THEN
      attempt := attempt + 1;
      IF attempt > {{retries}} THEN
        RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
          MESSAGE = format('{LOCK_FAILED} %s %I.%I', item.oid, item.nspname, item.relname);
      END IF;
      PERFORM pg_catalog.pg_sleep(least({{first_wait}} * 2 ^ (attempt - 1), {{longest_wait}}));
    END;
  END LOOP;
END
$migrator$;
"""


# The snapshot-exporting session's own settings, for its transaction: no parallel workers for
# the counts, and, as pg_dump sets for itself, no statement_timeout (one set for the database
# or role would cancel the counts of a large table, failing every backup) and no
# idle_in_transaction_session_timeout (the session waits for pg_dump idle in its
# transaction: ended, it would throw a complete dump away).
SNAPSHOT_SESSION: Final = """
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL statement_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;
"""


# A quoted or plain SQL identifier, and a schema-qualified name (pg_dump's, a count's).
IDENTIFIER: Final = r'(?:"(?:[^"]|"")*"|[^".,\s]+)'
QUALIFIED_NAME: Final = re.compile(rf"({IDENTIFIER})\.({IDENTIFIER})")
# pg_dump's error when its LOCK TABLE waited out --lock-wait-timeout: the tables it names.
PG_DUMP_LOCK_WAIT: Final = re.compile(
    r"canceling statement due to statement timeout\s*\n.*Query was: LOCK TABLE (?:ONLY )?"
    r"(.*) IN ACCESS SHARE MODE"
)


def tool_path(name: str) -> str:
    """``PG_BIN_DIR/name`` when the setting is given, else ``name`` found on PATH."""
    bin_dir = get_settings().pg_bin_dir
    found = shutil.which(name, path=bin_dir) if bin_dir else shutil.which(name)
    if found is None:
        where = f"PG_BIN_DIR {bin_dir!r}" if bin_dir else "PATH"
        raise BackupFailed(
            f"{name} was not found in {where}; install the PostgreSQL client tools, set "
            "MIGRATOR['PG_BIN_DIR'], or use --format portable."
        )
    return found


def tool_version(path: str) -> str:
    """The first line of ``<tool> --version``, e.g. 'pg_dump (PostgreSQL) 16.2'."""
    try:
        done = children.run([path, "--version"], timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupFailed(f"Cannot run {path!r}: {first_line(exc)}.") from exc
    line = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0 or not VERSION.search(line):
        raise BackupFailed(f"{path!r} did not report a PostgreSQL version; is it pg_dump?")
    return line


def major_version(version: str) -> tuple[int, ...]:
    """(16,) from '... 16.2', (9, 6) from '... 9.6.24': what must match across tools."""
    match = VERSION.search(version) or re.match(r"(\d+)(?:\.(\d+))?", version)
    if match is None:
        return ()
    major = int(match.group(1))
    return (major,) if major >= 10 or match.group(2) is None else (major, int(match.group(2)))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


class PgDumpEngine(BackupEngine):
    format = "native"
    engine = "pg_dump-custom"
    extension = ".dump"
    _ahead: tuple[Path, swap.Filling] | None = None  # restoring_ahead's payload and fill
    _unreachable: str | None = None  # why the route's new database was out of reach
    _contents: str | None = None  # an encrypted archive's pg_restore --list (check_restore)

    def check_backup(self) -> None:
        self._pg_dump = tool_path("pg_dump")
        self._version = tool_version(self._pg_dump)
        tool, server = major_version(self._version), major_version(server_version(self.connection))
        if tool < server:
            raise BackupFailed(
                f"pg_dump {_dotted(tool)} ({self._pg_dump}) is older than the PostgreSQL "
                f"{_dotted(server)} server of {self.connection.alias!r}; set "
                f"MIGRATOR['PG_BIN_DIR'] to PostgreSQL {_dotted(server)} client tools, or use "
                "--format portable."
            )

    def tool_version(self) -> str:
        return self._version

    def large_objects(self) -> int | None:
        return self._large_objects

    def dump(self, path: Path, progress: ProgressCallback) -> dict[str, int]:
        """pg_dump in a snapshot exported by a session that counts the rows meanwhile.

        The counts (what a restore drill checks) are of exactly the data in the archive,
        and taking them overlaps the dump instead of adding to it.
        """
        compress = get_settings().pg_dump_compress
        lock_wait = timeouts.backup_lock_wait()
        # its own connection: Django's may be in a transaction
        session = sessions.own_session(self.connection)
        try:
            with session.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                bound_wait = timeouts.backup_lock_timeout()
                cursor.execute(SNAPSHOT_SESSION + BOUND_LOCKS.format(lock_timeout=bound_wait))
                cursor.execute("SELECT pg_catalog.pg_export_snapshot(), pg_backend_pid()")
                snapshot, own_pid = cursor.fetchone()
                argv = [
                    self._pg_dump,
                    "--format=custom",
                    f"--compress={compress}",
                    "--no-password",
                    "--no-sync",  # the store syncs the payload; a FIFO cannot be synced
                    f"--file={path}",
                    f"--snapshot={snapshot}",
                    *self._role_arguments(),
                    *([] if lock_wait is None else [f"--lock-wait-timeout={bound_wait}"]),
                ]
                with libpq_environment(self.connection) as env, tempfile.TemporaryFile() as errors:
                    dump = children.popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=errors)
                    try:
                        with cancelling.interruptible(session):  # a lock wait, at once
                            tables = row_counts(cursor)
                            cursor.execute(
                                "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata"
                            )
                            self._large_objects = cursor.fetchone()[0]
                        returncode = dump.wait()
                    except BaseException as exc:  # an interrupt, a lost connection: not waited for
                        children.stop(dump)  # its LOCK TABLE cancelled too
                        if isinstance(exc, LockWaitTimedOut):
                            raise self._lock_wait_failed([exc.table], lock_wait, own_pid) from None
                        raise
                    if returncode != 0:
                        if locking := _lock_wait_of(errors):  # its --lock-wait-timeout
                            raise self._lock_wait_failed(locking, lock_wait, own_pid)
                        raise BackupFailed(
                            f"pg_dump failed for {self.connection.alias!r}: "
                            f"{self._error(errors, 'pg_dump', returncode)}."
                        )
                cursor.execute("ROLLBACK")
        finally:
            session.close()
        return tables

    def _lock_wait_failed(
        self, tables: list[tuple[str, str]], waited: float, own_pid: int
    ) -> BackupFailed:
        """The backup gave up waiting for a lock of ``tables`` (schema, name; pg_dump locks
        many at once) within ``backup_lock_wait``: who holds them, asked while they still
        do (not this backup's own session, which holds the ones it counted)."""
        names = {name: (schema, name) for schema, name in tables}
        blockers = timeouts.blocking_sessions(self.connection, list(names), exclude_pid=own_pid)
        held = {blocker.table for blocker in blockers}
        what = ".".join(names[held.pop()]) if len(held) == 1 else "its tables"
        return lock_wait_failed(self.connection, what, waited, blockers)

    def check_restore(self, manifest: Manifest, plaintext: PlaintextOpener) -> None:
        """The tools fit the archive; an encrypted one's table of contents is read now,
        from a decryption of its own (``_contents``): the restore reads a FIFO, once."""
        self._pg_restore, self._psql = tool_path("pg_restore"), tool_path("psql")
        tool, archive = major_version(tool_version(self._pg_restore)), major_version(manifest.tool)
        if tool < archive:
            raise BackupFailed(
                f"pg_restore {_dotted(tool)} ({self._pg_restore}) cannot read an archive written "
                f"by pg_dump {_dotted(archive)}; set MIGRATOR['PG_BIN_DIR'] to PostgreSQL "
                f"{_dotted(archive)} client tools."
            )
        if not manifest.encryption:
            return
        try:
            with plaintext() as payload:
                self._contents = self._listing(payload)
        except BackupFailed as exc:
            raise BackupFailed(
                f"Cannot read the table of contents of backup {manifest.id!r}: {exc}; nothing "
                f"was changed. Check that MIGRATOR['PG_BIN_DIR'] holds PostgreSQL "
                f"{_dotted(archive)} client tools."
            ) from exc

    def prepare_target(self, manifest: Manifest) -> None:
        """The schema that Django's ``search_path`` puts new tables in, made when none of
        its schemas exists yet and the archive makes one (a new database, with Django's
        tables in their own schema): migrator's own tables, made before the restore, need
        it; the restore's prelude drops them and the archive makes the schema again.
        Neither: BackupFailed, saying what to make."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT current_schema() IS NULL, current_setting('search_path')")
            missing, search_path = cursor.fetchone()
        if not missing:
            return
        held = {table.partition(".")[0] for table in manifest.tables}
        names = [
            quoted.replace('""', '"') if quoted else bare.lower()
            for quoted, bare in SEARCH_PATH_ITEM.findall(search_path)
        ]
        schema = next((name for name in names if name in held), None)
        if schema is None:
            raise BackupFailed(
                f"No schema of the search_path of {self.connection.alias!r} "
                f"({search_path!r}) exists and backup {manifest.id!r} makes none of them; "
                "create the schema (CREATE SCHEMA), or correct the search_path, then run "
                "again; nothing was changed."
            )
        with self.connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {self.connection.ops.quote_name(schema)}")
        logger.info("Created schema %r in %r for a restore", schema, self.connection.alias)

    def restore(
        self,
        path: Path,
        manifest: Manifest,
        *,
        keep_audit: Sequence[Statement],
        progress: ProgressCallback,
        in_place: bool = False,
    ) -> str | None:
        if self._ahead is not None and self._ahead[0] == path:
            return self._ahead[1].swap_in(keep_audit, manifest.id)
        jobs = 1 if in_place else get_settings().restore_jobs
        with self._parallel(path, jobs, progress, audit_inside=bool(keep_audit)) as fill:
            if fill is not None:
                return fill.swap_in(keep_audit, manifest.id)
        with (
            libpq_environment(self.connection) as env,
            scratch.private_directory("pg-restore") as private,
        ):
            prelude, postlude = self._prelude(), self._postlude(keep_audit).encode()
            prelude_file = private / "prelude.sql"
            _write_private(prelude_file, prelude)
            using = self._without_kept_extensions(path, private)
            if manifest.large_objects == 0:
                self._pipe(path, env, private, prelude_file, postlude, using)
            else:  # large objects, or a backup taken before they were counted
                self._relay(path, env, private, prelude_file, postlude, using)
        return None

    @contextmanager
    def restoring_ahead(
        self, path: Path, manifest: Manifest, progress: ProgressCallback
    ) -> Iterator[None]:
        """The parallel route's new database filled from here on, while the run lock is
        taken, migrator's tables made, the run opened and the safety backup taken.

        Where the route does not hold yet, ``restore`` asks again under the lock: the
        session in the way may have been the lock holder's, and it reports why not."""
        jobs = get_settings().restore_jobs
        with self._parallel(
            path, jobs, progress, audit_inside=manifest.holds_audit, explain=False
        ) as fill:
            self._ahead = None if fill is None else (path, fill)
            try:
                yield
            finally:
                self._ahead = None

    @contextmanager
    def _parallel(
        self,
        path: Path,
        jobs: int | None,
        progress: ProgressCallback,
        *,
        audit_inside: bool,
        explain: bool = True,
    ) -> Iterator[swap.Filling | None]:
        """The parallel route's fill begun, or None where it does not hold (``explain``:
        the progress then says why the restore runs in one transaction)."""
        admin = scratchdb.maintenance(self.connection)
        with ExitStack() as stack:
            stack.callback(admin.close)
            obstacle = self._unreachable or swap.obstacle(
                self.connection, admin, path, audit_inside=audit_inside, jobs=jobs
            )
            fill = None
            if obstacle is None:
                route_jobs = jobs or swap.DEFAULT_JOBS
                progress(ProgressEvent("restore_swap", message=SWAPPING.format(jobs=route_jobs)))
                env = stack.enter_context(libpq_environment(self.connection))
                private = stack.enter_context(scratch.private_directory("pg-restore"))
                tools = (self._pg_restore, self._psql)
                try:
                    fill = stack.enter_context(
                        swap.filling(
                            self.connection,
                            admin,
                            tools,
                            path,
                            env,
                            jobs=route_jobs,
                            private=private,
                            failed=self._failed,
                        )
                    )
                except scratchdb.Unreachable as exc:
                    if jobs is not None:  # asked for: say what to change
                        raise
                    obstacle = self._unreachable = exc.reason  # not tried again under the lock
                    stack.close()  # the route's environment and directory: not kept either
            if fill is None:
                swap.sweep(admin)  # what a killed one left, which only this route dropped
                admin.close()  # not kept through a restore in one transaction
                if explain and obstacle not in {swap.ONE_JOB, swap.NOT_EMPTY}:
                    progress(ProgressEvent("restore_serial", message=f"{SERIAL}: {obstacle}."))
            yield fill

    def _without_kept_extensions(self, path: Path, private: Path) -> list[str]:
        """``--use-list`` of the archive without the entries that drop, make and comment on
        the extensions this database already has: ``pg_restore --clean`` would drop and
        make them again (the version installed now is kept instead), which only their
        owner may do, not a role that owns the database but not the extensions a superuser
        installed in it. [] when there are none.

        The list keeps the archive's order, only commenting entries out: pg_restore then
        reads an archive that cannot seek (a FIFO: an encrypted one, listed beforehand by
        ``check_restore``) front to back, as it does without a list."""
        with self.connection.cursor() as cursor:
            cursor.execute(KEPT_EXTENSIONS)
            kept = {name for row in cursor.fetchall() for name in row}
        if not kept:
            return []
        try:
            contents = self._listing(path) if self._contents is None else self._contents
        except BackupFailed:
            return []  # the restore itself then says what is wrong
        entries = contents.splitlines(keepends=True)
        edited = [
            ";" + line if (entry := EXTENSION_ENTRY.match(line)) and entry[1] in kept else line
            for line in entries
        ]
        if edited == entries:
            return []
        _write_private(private / "restored.list", "".join(edited))
        return [f"--use-list={private / 'restored.list'}"]

    def _listing(self, path: Path) -> str:
        """``pg_restore --list`` of the archive at ``path``, read on stdin: of a FIFO that a
        decryption writes into, pg_restore reads only the table of contents at the start,
        and the decryption stops when it exits. BackupFailed saying why it failed."""
        try:
            with path.open("rb") as archive:
                done = children.run([self._pg_restore, "--list"], stdin=archive, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackupFailed(f"pg_restore --list failed: {first_line(exc)}") from exc
        if done.returncode != 0:
            said = f": {first_line(done.stderr, self.connection)}" if done.stderr.strip() else ""
            raise BackupFailed(f"pg_restore --list {children.ended(done.returncode)}{said}")
        return done.stdout

    def _pipe(
        self,
        path: Path,
        env: dict,
        private: Path,
        prelude_file: Path,
        postlude: bytes,
        using: list[str],
    ):
        """pg_restore's script into one psql transaction, committed only if it is complete.

        psql reads the prelude, then pg_restore's output straight from a pipe, then the
        postlude from a FIFO that is written only once pg_restore has exited cleanly:
        until then psql cannot reach COMMIT, and a pg_restore that stopped early (leaving
        a script that merely looks complete) gets psql killed, which rolls it all back.
        """
        postlude_fifo = private / "postlude.sql"
        os.mkfifo(postlude_fifo, 0o600)
        psql_files = [prelude_file, "-", postlude_fifo]
        with self._restoring(path, env, private, psql_files, using, relayed=False) as tools:
            self._check_reader(tools)
            self._send_postlude(postlude_fifo, postlude, tools)
            self._check_writer(tools)

    def _relay(
        self,
        path: Path,
        env: dict,
        private: Path,
        prelude_file: Path,
        postlude: bytes,
        using: list[str],
    ):
        """pg_restore's script passed on to psql by this process, without its own COMMIT.

        Without ``--single-transaction`` the script wraps the large objects in its own
        ``BEGIN;`` ... ``COMMIT;``, and that COMMIT would end psql's transaction half way.
        With it, the script's only COMMIT is its last statement: it is held back, checked
        and dropped, and once pg_restore has exited cleanly, psql writes the file ``ready``
        on reaching the end of the rest; only then is the postlude (whose last line is the
        restore's one COMMIT) written after it. A psql that outlives this process reads the
        end of its input instead: no COMMIT.
        """
        ready = private / READY
        with self._restoring(path, env, private, [prelude_file, "-"], using, relayed=True) as tools:
            try:
                end = _relay_script(tools.reader.stdout, tools.writer.stdin)
                self._check_reader(tools)
                tools.writer.stdin.write(self._without_final_commit(end) + SAY_READY)
                tools.writer.stdin.flush()
                self._when_psql_reaches(lambda: _said_ready(ready), tools)
                interrupts.hold_until_the_run_ends()  # what is left: the postlude
                tools.writer.stdin.write(postlude)
                tools.writer.stdin.close()
            except BrokenPipeError:  # psql stopped at an error in the script
                raise self._failed(tools.psql_errors, "psql", tools.writer.wait()) from None
            self._check_writer(tools)

    @contextmanager
    def _restoring(
        self,
        path: Path,
        env: dict,
        private: Path,
        psql_files: list,
        using: list[str],
        *,
        relayed: bool,
    ) -> Iterator["_Tools"]:
        """pg_restore reading the archive on stdin, and psql (stopping at the first error)
        reading ``psql_files`` ("-": pg_restore's script, or what this process relays when
        ``relayed``); whichever still runs on the way out is killed (psql before COMMIT:
        the server rolls back). Their errors go to ``pg_restore.err`` and ``psql.err``."""
        restore_argv = [
            self._pg_restore,
            "--file=-",
            "--clean",
            "--if-exists",
            "--no-owner",
            *using,
        ]
        psql_argv = [self._psql, *PSQL_OPTIONS, *(f"--file={name}" for name in psql_files)]
        with ExitStack() as stack:
            restore_errors = stack.enter_context((private / "pg_restore.err").open("w+b"))
            psql_errors = stack.enter_context((private / "psql.err").open("w+b"))
            with path.open("rb") as archive:  # on stdin: a FIFO cannot be opened twice
                reader = children.popen(
                    restore_argv + (["--single-transaction"] if relayed else []),
                    env=env,
                    stdin=archive,
                    stdout=subprocess.PIPE,
                    stderr=restore_errors,
                )
            _killed_on_exit(stack, reader)
            try:
                writer = children.popen(
                    psql_argv,
                    env=env,
                    stdin=subprocess.PIPE if relayed else reader.stdout,
                    stdout=subprocess.DEVNULL,
                    stderr=psql_errors,
                    cwd=private,  # where the relay's READY goes
                )
            finally:
                if not relayed:
                    reader.stdout.close()  # psql holds the read end now
            _killed_on_exit(stack, writer)
            yield _Tools(reader, writer, restore_errors, psql_errors)

    def _check_reader(self, tools: "_Tools") -> None:
        """pg_restore exited cleanly, else psql is killed before COMMIT."""
        if (returncode := tools.reader.wait()) != 0:
            psql_ended = tools.writer.poll()  # psql may have stopped first (pg_restore saw EPIPE)
            children.reap(tools.writer)
            if psql_ended or _has_error(tools.psql_errors):
                raise self._failed(tools.psql_errors, "psql", psql_ended)
            raise self._failed(tools.restore_errors, "pg_restore", returncode)

    def _check_writer(self, tools: "_Tools") -> None:
        if (returncode := tools.writer.wait()) != 0:
            raise self._failed(tools.psql_errors, "psql", returncode)

    def _without_final_commit(self, end: bytes) -> bytes:
        """The end of the script without its COMMIT, which must be there and last."""
        match = SCRIPT_END.search(end)
        if match is None:
            raise BackupFailed(
                f"Restore into {self.connection.alias!r} failed and was rolled back; nothing "
                "was changed: the script pg_restore wrote does not end with its COMMIT "
                f"({tool_version(self._pg_restore)})."
            )
        return end[: match.start() + 1] + match.group(1)

    def _send_postlude(self, fifo: Path, postlude: bytes, tools: "_Tools") -> None:
        """Write the postlude once psql opens the FIFO (having run all the rest: what is
        left is the audit merge and the COMMIT, which an interrupt no longer cuts short)."""

        def opened() -> int | None:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody reads the FIFO yet
                    raise
                return None

        descriptor = self._when_psql_reaches(opened, tools)
        os.set_blocking(descriptor, True)
        interrupts.hold_until_the_run_ends()
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(postlude)
        except BrokenPipeError:
            raise self._failed(tools.psql_errors, "psql", tools.writer.wait()) from None

    def _when_psql_reaches(self, reached: Callable[[], T | None], tools: "_Tools") -> T:
        """``reached()``'s first true answer, asked ever less often while psql runs the
        script; psql ending first is its failure (it stopped at an error)."""
        pause = FIRST_POLL
        while not (answer := reached()):
            if (returncode := tools.writer.poll()) is not None:
                raise self._failed(tools.psql_errors, "psql", returncode)
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_POLL)
        return answer

    def _failed(self, errors, tool: str, returncode: int | None = None) -> BackupFailed:
        error = PSQL_WHERE.sub("", self._error(errors, tool, returncode))  # no private path
        if locked := LOCK_FAILED_ON.search(error):
            return self._lock_failed(int(locked.group(1)), locked.group(2))
        return BackupFailed(
            f"Restore into {self.connection.alias!r} failed and was rolled back; nothing was "
            f"changed: {error}."
        )

    def _lock_failed(self, oid: int, table: str) -> BackupFailed:
        """The prelude's locks on relation ``oid`` (quoted ``table``) not granted: who
        holds them, asked while they still do."""
        blockers = timeouts.blocking_sessions(
            self.connection, [], exclude_pid=timeouts.backend_pid(self.connection), oids=[oid]
        )
        attempts = get_settings().lock_retries + 1
        return locks_not_granted(self.connection, table, attempts, blockers)

    def _prelude(self) -> str:
        """Opens the restore's transaction, which only the postlude's last line commits.

        Not ``psql --single-transaction``: psql would commit whatever it had read on
        reaching the end of its input, and it does when migrator dies before psql (the
        kernel closes the dead process's pipes before it kills its children, and some
        platforms do not kill them at all). Without that last line the session ends
        without COMMIT, and the server rolls back.
        """
        role = self.connection.settings_dict.get("OPTIONS", {}).get("assume_role")
        set_role = f"SET ROLE {self.connection.ops.quote_name(role)};\n" if role else ""
        bound = ""
        if (lock_timeout := timeouts.configured_lock_timeout()) is not None:  # None: no bound
            bound = BOUND_LOCKS.format(lock_timeout=lock_timeout)
        replacing = REPLACE_CONTENTS.format(
            retries=get_settings().lock_retries,
            first_wait=timeouts.backoff(1),
            longest_wait=timeouts.LONGEST_BACKOFF,
        )
        # error: the relayed script's own BEGIN warns; the script sets warning after it.
        return (
            "BEGIN;\nSET client_min_messages = error;\n"
            f"{timeouts.WATCH_CLIENT_SCRIPT}{set_role}{bound}{replacing}"
        )

    def _postlude(self, keep_audit: Sequence[Statement]) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('search_path')")
            search_path = cursor.fetchone()[0]
        lines = [
            self._render("SELECT pg_catalog.set_config('search_path', %s, false);", [search_path])
        ]
        lines += [self._render(sql + ";", params) for sql, params in keep_audit]
        return "\n".join([*lines, "COMMIT;"]) + "\n"

    def _render(self, sql: str, params: Sequence[object]) -> str:
        return self.connection.ops.compose_sql(sql, params) if params else sql

    def _role_arguments(self) -> list[str]:
        role = self.connection.settings_dict.get("OPTIONS", {}).get("assume_role")
        return [f"--role={role}"] if role else []

    def _error(self, handle, tool: str, returncode: int | None = None) -> str:
        """The tool's first error line, else how it ended (a signal leaves no line)."""
        handle.seek(0)
        text = handle.read(64 * 1024).decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
        how = "exited with an error" if returncode is None else children.ended(returncode)
        chosen = (errors or lines or [f"{tool} {how}"])[0]
        return scrub(chosen, self.connection).rstrip(".")


# Tables whose rows pg_dump archives: ordinary ones (partitions counted one by one) outside
# the system schemas, not an extension's.
TABLES: Final = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


class LockWaitTimedOut(Exception):
    """A count gave up waiting for its table's lock (``lock_timeout``): which table."""

    def __init__(self, table: tuple[str, str]) -> None:
        super().__init__(table)
        self.table = table  # (schema, name)


def row_counts(cursor) -> dict[str, int]:
    """Rows of every table, keyed ``schema.table``, in the cursor's transaction."""
    cursor.execute(TABLES)
    counts = {}
    for schema, table in cursor.fetchall():
        quoted = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
        try:
            cursor.execute(f"SELECT count(*) FROM {quoted}")
        except DatabaseError as exc:
            if timeouts.is_lock_timeout(exc):
                raise LockWaitTimedOut((schema, table)) from exc
            raise
        counts[f"{schema}.{table}"] = cursor.fetchone()[0]
    return counts


def _lock_wait_of(errors: BinaryIO) -> list[tuple[str, str]]:
    """The tables (schema, name) whose LOCK TABLE pg_dump gave up on (``--lock-wait-timeout``
    sets its ``statement_timeout`` while it locks), from its stderr; else none."""
    errors.seek(0)
    text = errors.read(64 * 1024).decode(errors="replace")
    match = PG_DUMP_LOCK_WAIT.search(text)
    if match is None:
        return []
    return [
        (_unquoted(schema), _unquoted(name))
        for schema, name in QUALIFIED_NAME.findall(match.group(1))
    ]


def _unquoted(identifier: str) -> str:
    """A quoted identifier's name (its doubled quotes undone); an unquoted one as it is."""
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


class _Tools(NamedTuple):
    """A restore's pg_restore (reader) and psql (writer), and the files of their stderr."""

    reader: subprocess.Popen
    writer: subprocess.Popen
    restore_errors: BinaryIO
    psql_errors: BinaryIO


def _killed_on_exit(stack: ExitStack, process: subprocess.Popen) -> None:
    """On the way out: the process killed if it still runs, reaped, its pipes closed."""

    def end() -> None:
        children.reap(process)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):  # what psql will never read
                    pipe.close()

    stack.callback(end)


def _said_ready(path: Path) -> bool:
    """Whether psql has written READY (``SAY_READY``)."""
    try:
        return path.read_bytes() == b"ready\n"
    except FileNotFoundError:
        return False


def _relay_script(source: BinaryIO, sink: BinaryIO) -> bytes:
    """Copy ``source`` to ``sink`` up to its end, and return its last HELD_BACK bytes, unsent.

    Each chunk is read with one read(2) and written without another copy in Python (a
    pipe fills chunks of 64 KB while psql keeps up): the copies are the kernel's.
    """
    held = b""
    while chunk := os.read(source.fileno(), RELAY_CHUNK):
        if len(chunk) < HELD_BACK:
            chunk, held = held + chunk, b""
        sink.write(held)
        sink.write(memoryview(chunk)[:-HELD_BACK])
        held = chunk[-HELD_BACK:]
    return held


def _has_error(handle) -> bool:
    handle.seek(0)
    return b"ERROR:" in handle.read(64 * 1024)


@contextmanager
def libpq_environment(connection) -> Iterator[dict[str, str]]:
    """The environment for a libpq tool connecting as Django's connection does."""
    params = dict(connection.get_connection_params())
    password = params.pop("password", None)
    if params.get("sslpassword"):
        raise BackupFailed(
            "OPTIONS['sslpassword'] cannot be handed to pg_dump without exposing it; "
            "use a service file (OPTIONS['service']) or --format portable."
        )
    env = {**os.environ}
    if "database" in params and "dbname" not in params:  # older Django spelled it so
        params["dbname"] = params.pop("database")
    for key, value in params.items():
        if key in LIBPQ_ENVIRONMENT and value is not None and value != "":
            env[LIBPQ_ENVIRONMENT[key]] = str(value)
        elif key not in NOT_FOR_TOOLS:
            logger.debug("Connection option %r is not passed to the PostgreSQL tools", key)
    env.setdefault("PGAPPNAME", "migrator backup")
    if not password:
        yield env
        return
    with scratch.private_directory("pg") as private:  # 0700, swept if a kill leaves it
        if "\n" in str(password) or "\r" in str(password):  # a passfile line cannot hold it
            env.pop("PGPASSFILE", None)
            env["PGPASSWORD"] = str(password)
        else:
            passfile = Path(private, "pgpass")
            escaped = str(password).replace("\\", "\\\\").replace(":", "\\:")
            _write_private(passfile, f"*:*:*:*:{escaped}\n")
            env.pop("PGPASSWORD", None)  # it would take precedence over the passfile
            env["PGPASSFILE"] = str(passfile)
        yield env


def _write_private(path: Path, text: str) -> None:
    descriptor = scratch.private_file(path)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
