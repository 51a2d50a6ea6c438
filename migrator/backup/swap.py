"""A native PostgreSQL restore in parallel: into a new database, swapped in by name.

With ``MIGRATOR["RESTORE_JOBS"]`` above 1 (or unset, into a database that holds nothing
yet: ``holds_objects``), ``pg_restore --jobs N`` fills a new database on the same server
(several sessions: tables load and indexes build side by side; an archive with foreign
keys in two steps, its tables vacuumed between them, so that each key's check merges two
indexes instead of hashing a table: ``_Steps``), the live run audit is merged
into it, and one transaction in the server's maintenance database renames the database
being restored ``migrator_replaced_<hex>`` and gives the new one its name. Until that
commit the database being restored is not touched, so a failure or a kill at any moment
leaves it exactly as it was (a killed restore's new database is dropped by the next one),
and the fill may start before the run lock is held (``filling``; ``Filling.swap_in``
under it). The replaced database is kept, its comment saying what it was, for an undo by
hand (two renames) until the next such restore of the same database.

The route is taken only where it holds, else the restore runs in one transaction as
usual (``obstacle`` says why, in the restore's progress): the payload must be a file
(``pg_restore --jobs`` seeks in it; an encrypted payload is streamed), the backup must
hold migrator's tables (the audit is merged before the swap), the role must own the
database and may create databases, the database must carry nothing a new one would not
(grants on it, settings of its own, a comment, a connection limit, another tablespace,
an ICU locale, subscriptions or replication slots, which would stay with the replaced
database), no other session may be connected to it, and the connection may not go through
a pooler (whose server sessions stay in the database when this process lets go of its
own); a server that does not let the role into the new database (``pg_hba.conf``) is found
out by connecting to it, before anything is filled (``scratchdb.Unreachable``). A rename
needs the database to itself, so this process's own sessions in it, its run lock's
included, end just before: a run that connects meanwhile makes the rename fail, changing
nothing.
"""

import logging
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from django.apps import apps
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

from migrator import children, interrupts, locking, timeouts
from migrator.backup import scratchdb
from migrator.backup.base import OWN_RELATIONS, PSQL_OPTIONS, Statement, first_line
from migrator.backup.manifest import database_identity
from migrator.exceptions import BackupFailed

logger = logging.getLogger(__name__)

SCRATCH_PREFIX: Final = "migrator_restore_"
REPLACED_PREFIX: Final = "migrator_replaced_"
SESSION_END_WAIT: Final = 5.0  # seconds; as long as PostgreSQL's own wait before a rename fails
# RESTORE_JOBS unset: the route is taken with this many jobs into a database that holds
# nothing yet (``holds_objects``), where it gives up nothing the one transaction keeps.
DEFAULT_JOBS: Final = 2
ONE_JOB: Final = "RESTORE_JOBS is 1"
NOT_EMPTY: Final = "the database holds objects, and RESTORE_JOBS is not set"
# A pooler keeps its server sessions in the database after this process lets go of its own.
POOLED: Final = "the database is reached through a connection pooler, which keeps sessions in it"

# Whether a database holds anything of its own, but for migrator's tables and Django's
# migration history (%s: their names), which every restore replaces: every object made
# after initdb has an OID from FirstNormalObjectId on (initdb's own, plpgsql and the
# schema public included, are below it; so are template0's, which the new database copies),
# and initdb makes none of the objects in ANY_ROW_CATALOGS.
FIRST_NORMAL_OID: Final = 16384
OWN_OID_CATALOGS: Final = (
    "pg_extension",
    "pg_proc",
    "pg_collation",
    "pg_operator",
    "pg_cast",
    "pg_ts_config",
    "pg_ts_dict",
)
ANY_ROW_CATALOGS: Final = (
    "pg_foreign_data_wrapper",
    "pg_event_trigger",
    "pg_publication",
    "pg_default_acl",
    "pg_largeobject_metadata",
)
HOLDS_OBJECTS: Final = "SELECT " + "\n    OR ".join(
    [
        f"EXISTS ({OWN_RELATIONS} AND NOT c.relname = ANY(%s))",
        "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
        f"WHERE oid >= {FIRST_NORMAL_OID} AND nspname !~ '^pg_')",  # not temporary schemas
        "EXISTS (SELECT 1 FROM pg_catalog.pg_type "  # not a table's row type, not an array
        f"WHERE oid >= {FIRST_NORMAL_OID} AND typrelid = 0 AND typelem = 0)",
        *(
            f"EXISTS (SELECT 1 FROM pg_catalog.{catalog} WHERE oid >= {FIRST_NORMAL_OID})"
            for catalog in OWN_OID_CATALOGS
        ),
        *(f"EXISTS (SELECT 1 FROM pg_catalog.{catalog})" for catalog in ANY_ROW_CATALOGS),
    ]
)

# What a database created from template0 by this role would not carry, one column each.
OBSTACLES: Final = (
    ("NOT (r.rolsuper OR r.rolcreatedb)", "the role may not create databases (CREATEDB)"),
    ("d.datdba <> r.oid", "the role does not own the database"),
    ("d.datacl IS NOT NULL", "the database has grants of its own"),
    ("d.datconnlimit <> -1", "the database has a connection limit"),
    ("t.spcname <> 'pg_default'", "the database is in another tablespace"),
    (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid)",
        "the database has settings of its own (ALTER DATABASE ... SET)",
    ),
    (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_shdescription c WHERE c.objoid = d.oid "
        "AND c.classoid = 'pg_catalog.pg_database'::regclass)",
        "the database has a comment",
    ),
    (  # they would stay with the replaced database, and go when it is dropped
        "EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s WHERE s.subdbid = d.oid)",
        "the database has subscriptions (logical replication)",
    ),
    (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s WHERE s.datoid = d.oid)",
        "the database has replication slots (logical decoding)",
    ),
)
ICU: Final = ("d.datlocprovider <> 'c'", "the database uses an ICU locale")
# A foreign key in ``pg_restore --list``: "<dump id>; <catalog oid> <oid> FK CONSTRAINT ...".
FOREIGN_KEY: Final = re.compile(rb"^\d+; \d+ \d+ FK CONSTRAINT ", re.MULTILINE)
LIST_TIMEOUT: Final = 60.0  # seconds; it reads the archive's table of contents only
# The tables the first step filled, largest first, and what vacuums a share of them.
FILLED_TABLES: Final = """
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.pg_relation_size(c.oid)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
    ORDER BY 2 DESC, 1"""
VACUUM: Final = f"""SET client_encoding = 'UTF8';
SET statement_timeout = 0;
SET client_min_messages = error;
{timeouts.WATCH_CLIENT_SCRIPT}
VACUUM (SKIP_LOCKED) {{tables}};
"""
OTHER_SESSIONS: Final = (
    "(SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid "
    "AND a.backend_type <> 'autovacuum worker' "  # the rename has them stop
    "AND NOT a.pid = ANY(%s) AND NOT starts_with(coalesce(a.application_name, ''), %s))"
)


def obstacle(
    connection: BaseDatabaseWrapper,
    admin: BaseDatabaseWrapper,
    path: Path,
    *,
    audit_inside: bool,
    jobs: int | None,
) -> str | None:
    """Why this restore cannot take the parallel route, or None when it can.

    ``admin``: a connection to the maintenance database (``scratchdb.maintenance``);
    ``audit_inside``: the backup holds migrator's tables, which the live audit merges into;
    ``jobs``: RESTORE_JOBS, None where it is not set.
    """
    if jobs == 1:
        return ONE_JOB
    if jobs is None and holds_objects(connection):
        return NOT_EMPTY
    if locking.pooled(connection):
        return POOLED
    if not path.is_file():
        return "the payload is streamed (encrypted), and pg_restore --jobs needs a file"
    if not audit_inside:
        return "the backup holds no migrator tables, so the audit cannot be merged before"
    checks = [*OBSTACLES, ICU] if connection.pg_version >= 150000 else list(OBSTACLES)
    columns = ", ".join(sql for sql, _ in checks)
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns}, {OTHER_SESSIONS} FROM pg_catalog.pg_database d "
                "JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace, "
                "pg_catalog.pg_roles r WHERE d.datname = %s AND r.rolname = current_user",
                [
                    _own_pids(connection),
                    locking.own_application_prefix(),
                    connection.settings_dict["NAME"],
                ],
            )
            row = cursor.fetchone()
    except DatabaseError as exc:
        return f"the server's maintenance database is out of reach ({first_line(exc)})"
    if row is None:
        return "the database is not found by its name"
    *found, others = row
    reasons = [reason for (_, reason), there in zip(checks, found, strict=True) if there]
    if others:
        reasons.append(f"{others} other session(s) are connected to it")
    return "; ".join(reasons) or None


def sweep(admin: BaseDatabaseWrapper) -> None:
    """Drop the new databases of killed parallel restores (``scratchdb.drop_unused``) from a
    restore in one transaction too, so that a database restored that way from then on does
    not keep a killed one's copy of its data for good. At best: a role that may not reach
    the maintenance database, or drop them, leaves them for a parallel restore to drop."""
    with suppress(DatabaseError):
        scratchdb.drop_unused(admin, SCRATCH_PREFIX)


def holds_objects(connection: BaseDatabaseWrapper) -> bool:
    """Whether the database holds anything a restore would not replace or CREATE DATABASE
    would not make: where it does not, the parallel route leaves nothing behind."""
    replaced = [
        model._meta.db_table
        for model in [*apps.get_app_config("migrator").get_models(), MigrationRecorder.Migration]
    ]
    with connection.cursor() as cursor:
        cursor.execute(HOLDS_OBJECTS, [replaced])
        return cursor.fetchone()[0]


@dataclass
class Filling:
    """A new database being filled by ``pg_restore --jobs``: ``swap_in`` once it is wanted.

    Made by ``filling``, which drops the new database unless it was swapped in.
    """

    connection: BaseDatabaseWrapper  # of the database being restored
    admin: BaseDatabaseWrapper  # to the maintenance database
    scratch: BaseDatabaseWrapper  # to the new database, its alias its name
    steps: "_Steps"
    swapped: bool = False

    def swap_in(self, keep_audit: Sequence[Statement], backup_id: str) -> str:
        """Wait for the fill, merge the live audit into it, and give it the database's name;
        the name the replaced database is kept under."""
        self.steps.finish(self.scratch)
        with _failing(self.connection):
            with transaction.atomic(using=self.scratch.alias), self.scratch.cursor() as cursor:
                for sql, params in keep_audit:
                    cursor.execute(sql, params or None)
            ending = _own_pids(self.scratch)
            self.scratch.close()
            replaced = _swap(self.admin, self.connection, self.scratch.alias, backup_id, ending)
        self.swapped = True
        return replaced


@dataclass
class _Steps:
    """The children filling the new database, one step after another.

    An archive with foreign keys is restored in two steps, its tables and their data,
    then the rest (indexes, constraints, triggers, ...), with a VACUUM of the filled tables
    between them, ``jobs`` sessions side by side. Each foreign key's check then reads
    vacuumed tables, as it would in a live database: the planner merges the two indexes
    (index-only scans) instead of hashing the whole referenced table, several times faster,
    and the restored database starts out vacuumed. Without foreign keys it is one step.
    """

    pg_restore: list[str]  # the argv, but for the sections and the archive
    psql: list[str]  # the argv, but for the script
    path: Path
    env: dict[str, str]
    private: Path
    jobs: int
    errors: IO[bytes]
    failed: Callable[[IO[bytes], str, int], BackupFailed]
    in_steps: bool
    running: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> None:
        sections = ["--section=pre-data", "--section=data"] if self.in_steps else []
        self._spawn([*self.pg_restore, *sections, str(self.path)])

    def finish(self, scratch: BaseDatabaseWrapper) -> None:
        """Wait for the fill; where it is in steps, vacuum and restore the rest."""
        self._wait("pg_restore")
        if not self.in_steps:
            return
        with _failing(scratch), scratch.cursor() as cursor:
            cursor.execute(FILLED_TABLES)
            tables = cursor.fetchall()
        for index, share in enumerate(_shares(tables, self.jobs)):
            script = self.private / f"vacuum-{index}.sql"
            script.write_text(VACUUM.format(tables=", ".join(share)), encoding="utf-8")
            self._spawn([*self.psql, f"--file={script}"])
        self._wait("psql")
        self._spawn([*self.pg_restore, "--section=post-data", str(self.path)])
        self._wait("pg_restore")

    def reap(self) -> None:
        for child in self.running:
            children.reap(child)

    def _spawn(self, argv: list[str]) -> None:
        quiet = subprocess.DEVNULL
        self.running.append(
            children.popen(argv, env=self.env, stdin=quiet, stdout=quiet, stderr=self.errors)
        )

    def _wait(self, tool: str) -> None:
        codes = [child.wait() for child in self.running]  # all of them, then the verdict
        if any(codes):
            raise self.failed(self.errors, tool, next(code for code in codes if code))
        self.running = []


def _shares(tables: Sequence[tuple[str, int]], jobs: int) -> list[list[str]]:
    """``tables`` (name, size; largest first) in at most ``jobs`` shares of about equal size."""
    shares: list[list[str]] = [[] for _ in range(min(jobs, len(tables)))]
    sizes = [0] * len(shares)
    for name, size in tables:
        smallest = sizes.index(min(sizes))
        shares[smallest].append(name)
        sizes[smallest] += size
    return shares


def in_steps(pg_restore: str, path: Path) -> bool:
    """Whether the archive at ``path`` holds a foreign key (``pg_restore --list``)."""
    try:
        listing = children.run([pg_restore, "--list", str(path)], timeout=LIST_TIMEOUT, text=False)
    except (OSError, subprocess.SubprocessError):
        return False  # the fill itself then says what is wrong
    return listing.returncode == 0 and FOREIGN_KEY.search(listing.stdout) is not None


@contextmanager
def filling(
    connection: BaseDatabaseWrapper,
    admin: BaseDatabaseWrapper,
    tools: tuple[str, str],
    path: Path,
    env: dict[str, str],
    *,
    jobs: int,
    private: Path,
    failed: Callable[[IO[bytes], str, int], BackupFailed],
) -> Iterator[Filling]:
    """Start filling a new database from ``path``; dropped on the way out unless swapped in.

    The database being restored is not touched until ``swap_in``, so the fill may start
    before the run lock is held. ``admin``: as for ``obstacle``; ``tools``: pg_restore's
    and psql's paths; ``env``: libpq's environment for ``connection``; ``private``: a
    private directory for the tools' files (their stderr in ``pg_restore.err``);
    ``failed``: the engine's BackupFailed for a tool that failed.
    """
    pg_restore, psql = tools
    with _failing(connection):
        scratchdb.drop_unused(  # the database an earlier swap replaced: kept until now
            admin,
            REPLACED_PREFIX,
            described=_replaced(connection.settings_dict["NAME"]),
            why="replaced by an earlier restore",
        )
    stepped = in_steps(pg_restore, path)
    name = scratchdb.create(admin, connection, SCRATCH_PREFIX, then="Nothing was changed.")
    fill = None
    try:
        with (
            scratchdb.registered(connection, name) as scratch,
            (private / "pg_restore.err").open("w+b") as errors,
        ):
            steps = _Steps(
                [pg_restore, f"--jobs={jobs}", "--exit-on-error", "--no-owner", "--no-password"]
                + [f"--dbname={name}"],
                [psql, *PSQL_OPTIONS, f"--dbname={name}"],
                path,
                {**env, "PGAPPNAME": scratchdb.TOOL_APPLICATION},
                private,
                jobs,
                errors,
                failed,
                stepped,
            )
            try:
                scratchdb.connect(  # a session of its own in it: sweeps skip it
                    scratch,
                    connection,
                    failing=f"Restore into {connection.alias!r} cannot run in parallel",
                    then="Let the role connect to databases it creates (pg_hba.conf), or set "
                    "MIGRATOR['RESTORE_JOBS'] = 1 to restore in one transaction.",
                )
                steps.start()
                fill = Filling(connection, admin, scratch, steps)
                yield fill
            finally:
                steps.reap()
    finally:
        if fill is None or not fill.swapped:
            with suppress(DatabaseError):
                scratchdb.drop(admin, name)


@contextmanager
def _failing(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """A database error of the parallel route as the restore's BackupFailed."""
    try:
        yield
    except DatabaseError as exc:
        raise BackupFailed(
            f"Restore into {connection.alias!r} failed and its new database was dropped; "
            f"nothing was changed: {first_line(exc, connection)}."
        ) from exc


def _swap(
    admin: BaseDatabaseWrapper,
    connection: BaseDatabaseWrapper,
    name: str,
    backup_id: str,
    ending: list[int],
) -> str:
    """Rename the restored database away and the new one into its place, in one transaction;
    the name it was renamed to. ``ending``: pids of this process's closed sessions in the
    new database."""
    target = connection.settings_dict["NAME"]
    replaced = f"{REPLACED_PREFIX}{secrets.token_hex(6)}"
    quote = admin.ops.quote_name
    comment = (
        f"{_replaced(target)}before backup {backup_id} was restored at "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}"
    )
    ending = ending + _own_pids(connection)
    for session in _own_sessions(connection):
        session.close()
    ending += locking.end_own_lock_session(admin, target)
    _await_end(admin, ending)
    with admin.cursor() as cursor:
        try:
            cursor.execute("BEGIN")
            cursor.execute(f"ALTER DATABASE {quote(target)} RENAME TO {quote(replaced)}")
            cursor.execute(f"ALTER DATABASE {quote(name)} RENAME TO {quote(target)}")
            cursor.execute(f"COMMENT ON DATABASE {quote(replaced)} IS %s", [comment])
            interrupts.hold_until_the_run_ends()
            cursor.execute("COMMIT")
        except BaseException as exc:  # Ctrl-C too: the renames must not wait for a COMMIT
            try:
                cursor.execute("ROLLBACK")
            except DatabaseError:  # still inside a statement (psycopg 3 lets a signal in as
                admin.close()  # it waits): the session ends, so the server rolls it back
            if not isinstance(exc, DatabaseError):
                raise
            raise BackupFailed(
                f"Restore into {connection.alias!r} was not swapped in, nothing was changed: "
                f"{first_line(exc, connection)}. Another session connected to it meanwhile; "
                "try again, or set MIGRATOR['RESTORE_JOBS'] = 1 to restore in one transaction."
            ) from exc
    logger.info("Restored %s by a swap; %s was kept as %s", backup_id, target, replaced)
    return replaced


def _await_end(admin: BaseDatabaseWrapper, pids: list[int]) -> None:
    """Wait until the sessions ``pids``, closed or signalled, have left (at most
    ``SESSION_END_WAIT`` seconds). A database rename finding a session still on its way out
    waits 100 ms before it looks again: a tenth of a second on every swap, without this."""
    deadline = time.monotonic() + SESSION_END_WAIT
    with admin.cursor() as cursor:
        while pids and time.monotonic() < deadline:
            cursor.execute(
                "SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s)", [pids]
            )
            pids = [pid for (pid,) in cursor.fetchall()]


def _replaced(target: str) -> str:
    """How the comment of a database that a swap replaced begins."""
    return f"migrator: {target} as it was "


def _own_sessions(connection: BaseDatabaseWrapper) -> list[BaseDatabaseWrapper]:
    """This process's open connections to ``connection``'s database, it included."""
    identity = database_identity(connection)
    return [connection] + [
        other
        for other in connections.all(initialized_only=True)
        if other is not connection
        and other.connection is not None
        and database_identity(other) == identity
    ]


def _own_pids(connection: BaseDatabaseWrapper) -> list[int]:
    pids = []
    for session in _own_sessions(connection):
        if session.connection is not None:
            with session.cursor() as cursor:
                cursor.execute("SELECT pg_catalog.pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
    return pids
