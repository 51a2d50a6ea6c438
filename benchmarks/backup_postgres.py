"""Native and portable PostgreSQL backups against ``pg_dump -Fc`` and ``pg_restore`` run directly.

Builds a database of about 1 GB (two Django models: 4 M accounts and 3 M notes by default,
hex text that compresses about 2:1), then, interleaving the two so that caches favour
neither, times:

* ``pg_dump --format=custom --compress=1`` (migrator's default level, else
  ``--pg-dump-compress``, which sets ``PG_DUMP_COMPRESS`` too) vs
  ``backup`` (native): the ratio, and the Python process's peak RSS;
* ``pg_restore --single-transaction --exit-on-error --no-owner`` into an empty database vs
  ``restore --no-safety-backup`` into an empty database, with the default settings (into an
  empty database, ``pg_restore --jobs 2`` into a new database swapped in by name) and with
  ``RESTORE_JOBS = 1`` (in one transaction), and, once, over the populated source database
  (the usual case, in one transaction, where every relation is dropped first): the three
  take turns going first from round to round, and each starts from a checkpointed server,
  so that none pays for another's writes;
* ``restore`` with its safety backup (the production default) over the populated database,
  in one transaction (the default there) and with ``RESTORE_JOBS`` (``--restore-jobs``,
  default 2; its new database fills while the safety backup is taken), against the same by
  hand: ``pg_dump -Fc`` (same level) of the database, then ``pg_restore
  --single-transaction --clean --if-exists`` (``--safety-rounds``, in turns);
* ``backup --format portable``: time, size and peak RSS.

Every migrator figure comes from a fresh child process: its peak RSS is that operation's,
Django included (``idle``: a child that only connects). Uses ``DATABASE_URL`` when set,
else starts a PostgreSQL server from the ``pgserver`` package.

    python benchmarks/backup_postgres.py [--accounts 4000000] [--notes 3000000] [--repeat 3]

Issue 20's restore figure (about 250 MB, 1.5 M rows; the backup rounds skipped):

    python benchmarks/backup_postgres.py --accounts 860000 --notes 640000 --restore-only --repeat 6

The same with ``--large-objects 1``: the restore in one transaction is relayed through
migrator (an archive holding large objects), which that ratio prices against the direct
pipe's.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.backup_common import (  # noqa: E402
    child_env,
    make_project,
    mb,
    median,
    run_child,
    timed,
)

FILL = [
    """INSERT INTO backupbench_account (branch, balance, filler)
       SELECT g % 100, (g::bigint * 7919) % 1000000, md5(g::text) || md5((g + 1)::text)
       FROM generate_series(1, {accounts}) g""",
    """INSERT INTO backupbench_note (account_id, body, amount, created)
       SELECT 1 + g % {accounts}, md5((g * 3)::text) || md5((g * 5)::text),
              (g % 100000) / 100.0, now() - g * interval '1 second'
       FROM generate_series(1, {notes}) g""",
    "VACUUM ANALYZE",
]
# --large-objects N: a table referencing N small large objects, so that the restore goes
# through migrator's relay (the script's final COMMIT taken out) instead of a direct pipe.
LARGE_OBJECTS = [
    "CREATE TABLE bench_document (id integer PRIMARY KEY, body oid NOT NULL)",
    """INSERT INTO bench_document
       SELECT g, lo_from_bytea(0, convert_to(md5(g::text), 'UTF8'))
       FROM generate_series(1, {large_objects}) g""",
]


def server(scratch: Path) -> tuple[dict, str]:
    """Django settings for the server's 'postgres' database, and the tools' directory."""
    import dj_database_url
    import pgserver

    bin_dir = str(Path(pgserver.__file__).parent / "pginstall" / "bin")
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = pgserver.get_server(scratch / "pgdata", cleanup_mode="stop").get_uri()
    return dj_database_url.parse(url), bin_dir


class Admin:
    """CREATE/DROP DATABASE and plain SQL, through psycopg2 in autocommit."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def params(self, name: str) -> dict:
        s = self.settings
        params = {"dbname": name, **s.get("OPTIONS", {})}
        for key, option in (
            ("USER", "user"),
            ("PASSWORD", "password"),
            ("HOST", "host"),
            ("PORT", "port"),
        ):
            if s.get(key):
                params[option] = s[key]
        return params

    def execute(self, sql: str, *, database: str = "postgres") -> list:
        import psycopg2

        connection = psycopg2.connect(**self.params(database))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def create(self, name: str) -> dict:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.execute(f'CREATE DATABASE "{name}"')
        return {**self.settings, "NAME": name}

    def drop(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_replaced(self) -> None:
        """The databases parallel restores replaced and kept: none carried into a next round."""
        for (replaced,) in self.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'migrator_replaced_')"
        ):
            self.drop(replaced)

    def tool_env(self, name: str) -> dict:
        params = self.params(name)
        names = {
            "host": "PGHOST",
            "port": "PGPORT",
            "user": "PGUSER",
            "password": "PGPASSWORD",
            "dbname": "PGDATABASE",
        }
        return {**os.environ, **{names[k]: str(v) for k, v in params.items() if k in names}}


def create_source(admin: Admin, source: str, env: dict, options: argparse.Namespace) -> int:
    """Create, migrate and fill the benchmark's source database; its size in bytes.

    ``options``: ``accounts`` and ``notes``, and ``large_objects`` where the script has it.
    """
    admin.create(source)
    run_child(env, "migrate")
    print(f"Filling {source}: {options.accounts:,} accounts, {options.notes:,} notes...")
    large_objects = getattr(options, "large_objects", 0)
    for sql in FILL + (LARGE_OBJECTS if large_objects else []):
        values = {"accounts": options.accounts, "notes": options.notes}
        admin.execute(sql.format(**values, large_objects=large_objects), database=source)
    size = admin.execute(f"SELECT pg_database_size('{source}')")[0][0]
    print(f"Database size: {mb(size)}")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4_000_000)
    parser.add_argument("--notes", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-portable", action="store_true")
    parser.add_argument(
        "--restore-only",
        action="store_true",
        help="take one backup and time only the restores (no portable backup either)",
    )
    parser.add_argument(
        "--restore-jobs",
        type=int,
        default=2,
        help="RESTORE_JOBS of the parallel restore over the populated database (default 2)",
    )
    parser.add_argument(
        "--pg-dump-compress",
        type=int,
        default=1,
        help="PG_DUMP_COMPRESS of the backups, and pg_dump's level beside them (default 1)",
    )
    parser.add_argument(
        "--safety-rounds",
        type=int,
        default=3,
        help="rounds of restores over the populated database with a safety backup (default 3)",
    )
    parser.add_argument(
        "--large-objects",
        type=int,
        default=0,
        help="add a table referencing this many large objects (the restore is then relayed)",
    )
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="migrator-bench-"))
    # Registered before the server starts, so it runs after pgserver has stopped it.
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    run(options, scratch)


def run(options: argparse.Namespace, scratch: Path) -> None:
    settings, bin_dir = server(scratch)
    admin = Admin(settings)
    project = make_project(scratch / "project")
    backups = scratch / "backups"

    def env_for(name: str, jobs: int | None = None) -> dict:
        """The child's environment: RESTORE_JOBS ``jobs``, else unset (the default)."""
        env = child_env(project, {**settings, "NAME": name}, backups, bin_dir)
        env["BENCH_PG_DUMP_COMPRESS"] = str(options.pg_dump_compress)
        return env if jobs is None else {**env, "BENCH_RESTORE_JOBS": str(jobs)}

    source = "backup_bench_source"
    size = create_source(admin, source, env_for(source), options)

    pg_dump, pg_restore = str(Path(bin_dir, "pg_dump")), str(Path(bin_dir, "pg_restore"))
    direct_file = scratch / "direct.dump"
    direct, native, native_peaks, native_ids = [], [], [], []
    for _ in range(1 if options.restore_only else options.repeat):
        direct.append(
            timed(
                [
                    pg_dump,
                    "--format=custom",
                    f"--compress={options.pg_dump_compress}",
                    "--no-password",
                    f"--file={direct_file}",
                ],
                admin.tool_env(source),
            )
        )
        result = run_child(env_for(source), "native-backup")
        native.append(result["seconds"])
        native_peaks.append(result["peak_rss_mb"])
        native_ids.append(result["id"])
    dump_size = direct_file.stat().st_size

    def direct_restore(target: str) -> float:
        return timed(
            [
                pg_restore,
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-password",
                f"--dbname={target}",
                str(direct_file),
            ],
            admin.tool_env(target),
        )

    restore_peaks = []

    def native_restore(target: str, jobs: int | None = None) -> float:
        result = run_child(env_for(target, jobs), "restore", native_ids[-1])
        restore_peaks.append(result["peak_rss_mb"])
        admin.drop_replaced()
        return result["seconds"]

    restore_direct, restore_default, restore_serial = [], [], []
    for index in range(options.repeat):
        # Each goes first, second and third in turn.
        order = [
            (restore_direct, direct_restore),
            (restore_default, native_restore),
            (restore_serial, lambda target: native_restore(target, 1)),
        ]
        for times, restore in order[index % 3 :] + order[: index % 3]:
            target = f"backup_bench_restore_{index}"
            admin.create(target)
            admin.execute("CHECKPOINT")
            times.append(restore(target))
            admin.drop(target)
    admin.execute("CHECKPOINT")
    over_source = run_child(env_for(source), "restore", native_ids[-1])
    idle = run_child(env_for(source), "idle")
    safely = safe_restores(options, admin, source, native_ids[-1], env_for, direct_file, bin_dir)

    portable = None
    if not (options.skip_portable or options.restore_only):
        portable = run_child(env_for(source), "portable-backup")

    report(
        options,
        size,
        dump_size,
        direct,
        native,
        native_peaks,
        restore_direct,
        restore_default,
        restore_serial,
        restore_peaks,
        over_source,
        idle,
        portable,
        safely,
    )


BY_HAND = "by hand: `pg_dump -Fc` then `pg_restore --single-transaction --clean`"


def safe_restores(options, admin, source, backup_id, env_for, dump: Path, bin_dir) -> dict:
    """Restores over the populated database with a backup of it taken first, the production
    default, against the same done by hand: in turns, ``--safety-rounds`` of each.

    Returns each one's times and the peak RSS of migrator's children (none by hand)."""
    safety_file = dump.with_name("safety.dump")
    tool_env = admin.tool_env(source)

    def by_hand() -> float:
        dumped = timed(
            [
                str(Path(bin_dir, "pg_dump")),
                "--format=custom",
                f"--compress={options.pg_dump_compress}",
                "--no-password",
                f"--file={safety_file}",
            ],
            tool_env,
        )
        restore = [str(Path(bin_dir, "pg_restore")), "--single-transaction", "--clean"]
        restore += ["--if-exists", "--exit-on-error", "--no-owner", "--no-password"]
        return dumped + timed([*restore, f"--dbname={source}", str(dump)], tool_env)

    def migrator(jobs: int | None) -> float:
        result = run_child(env_for(source, jobs), "safe-restore", backup_id)
        peaks.append(result["peak_rss_mb"])
        admin.drop_replaced()
        return result["seconds"]

    peaks: list[float] = []
    order = [
        (BY_HAND, by_hand),
        ("`restore` with its safety backup, over the populated database", lambda: migrator(None)),
        (
            f"the same, RESTORE_JOBS={options.restore_jobs} (the new database fills while the "
            "safety backup is taken)",
            lambda: migrator(options.restore_jobs),
        ),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in order}
    for index in range(options.safety_rounds):
        for name, restore in order[index % 3 :] + order[: index % 3]:
            admin.execute("CHECKPOINT")
            times[name].append(restore())
    return {name: (seconds, [] if name == BY_HAND else peaks) for name, seconds in times.items()}


def report(
    options,
    size,
    dump_size,
    direct,
    native,
    native_peaks,
    restore_direct,
    restore_default,
    restore_serial,
    restore_peaks,
    over_source,
    idle,
    portable,
    safely,
) -> None:
    def row(name: str, seconds: float, baseline: float | None, peak: float | None) -> str:
        ratio = f"{seconds / baseline:.2f}x" if baseline else ""
        peak_text = f"{peak:.0f} MB" if peak is not None else "(not Python)"
        return f"| {name} | {seconds:.1f} s | {ratio} | {peak_text} |"

    print()
    print(
        f"PostgreSQL, {mb(size)} database ({options.accounts:,} + {options.notes:,} rows, "
        f"{options.large_objects:,} large objects), "
        f"custom-format dump {mb(dump_size)}; medians of {options.repeat} runs."
    )
    print()
    print("| operation | time | ratio | Python peak RSS |")
    print("| --- | --- | --- | --- |")
    print(row(f"`pg_dump -Fc --compress={options.pg_dump_compress}`", median(direct), None, None))
    print(row("`backup` (native)", median(native), median(direct), max(native_peaks)))
    print(
        row(
            "`pg_restore --single-transaction` into an empty database",
            median(restore_direct),
            None,
            None,
        )
    )
    print(
        row(
            "`restore --no-safety-backup` into an empty database (default settings: "
            "`pg_restore --jobs` into a new database, swapped in)",
            median(restore_default),
            median(restore_direct),
            max(restore_peaks),
        )
    )
    print(
        row(
            "`restore --no-safety-backup`, RESTORE_JOBS=1 (one transaction), into an empty "
            "database",
            median(restore_serial),
            median(restore_direct),
            max(restore_peaks),
        )
    )
    print(
        row(
            "`restore --no-safety-backup` over the populated database",
            over_source["seconds"],
            median(restore_direct),
            over_source["peak_rss_mb"],
        )
    )
    for name, (times, peaks) in safely.items() if options.safety_rounds else ():
        baseline = median(safely[BY_HAND][0])
        print(row(name, median(times), baseline, max(peaks) if peaks else None))
    if portable:
        print(
            row(
                f"`backup --format portable` ({mb(portable['size'])})",
                portable["seconds"],
                median(direct),
                portable["peak_rss_mb"],
            )
        )
    print(row("idle child (Django set up, connected)", 0.0, None, idle["peak_rss_mb"]))
    print()
    print(
        f"best runs: native backup / pg_dump {min(native) / min(direct):.3f}, "
        f"native restore / pg_restore {min(restore_default) / min(restore_direct):.3f}"
    )
    print(
        f"native backup / pg_dump: {median(native) / median(direct):.3f}  "
        f"(runs: {', '.join(f'{t:.1f}' for t in native)} vs "
        f"{', '.join(f'{t:.1f}' for t in direct)})"
    )
    for name, ours in (
        ("restore (default settings)", restore_default),
        ("restore with RESTORE_JOBS=1", restore_serial),
    ):
        print(
            f"native {name} / pg_restore: {median(ours) / median(restore_direct):.3f}  "
            f"(runs: {', '.join(f'{t:.2f}' for t in ours)} vs "
            f"{', '.join(f'{t:.2f}' for t in restore_direct)})"
        )
        rounds = [mine / theirs for mine, theirs in zip(ours, restore_direct, strict=True)]
        print(
            f"{name} into an empty database / `pg_restore --single-transaction --exit-on-error "
            f"--no-owner` of the same dump: median ratio {median(rounds):.2f} over "
            f"{len(rounds)} interleaved rounds (rounds: {', '.join(f'{r:.2f}' for r in rounds)}; "
            f"load average {', '.join(f'{load:.1f}' for load in os.getloadavg())})"
        )


if __name__ == "__main__":
    main()
