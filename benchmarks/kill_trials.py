"""kill -9 trials: safemigrate, rollback, backup and restore killed at random moments.

    python -m benchmarks.kill_trials --trials 100 [--vendor sqlite|postgresql] [--seed N]
        [--restore-jobs N]

Each trial starts one command in a child process against a fresh database (the demo
project plus the ``basic`` scenario and a 100,000-row table), kills it with SIGKILL after
a random delay within that command's measured duration, then runs ``migrationhistory``
(any command that looks) and checks:

- consistent: every column of the scenario exists exactly when its migration is recorded
  applied; migrator's hash records and ``django_migrations`` name the same migrations; the
  big table holds either the data before a restore or the backup's, nothing between;
- no run left ``running`` once a command has looked;
- no lingering process: nothing whose command line names the trial's directories (psql,
  pg_restore, pg_dump), and on PostgreSQL no session left on the database within 15 s;
- no scratch directory (password files, working copies) left after that command.

``--restore-jobs N`` sets ``RESTORE_JOBS``: on PostgreSQL restores then take the parallel
route (a new database filled by ``pg_restore --jobs`` and swapped in by name), and a
killed one's new database must be gone once the next restore has run.

Then ``safemigrate`` must complete the database (exit 0) before the next trial. Prints
one line per trial and the totals; exit status 1 when any check failed.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = 100_000
COLUMNS = {"size": "0002_widget_size", "colour": "0003_slow_step", "weight": "0004_widget_weight"}
SETTLE = 15.0
OPERATIONS = ("safemigrate", "rollback", "backup", "restore")


class Trials:
    def __init__(self, vendor: str, workdir: Path, restore_jobs: int = 1) -> None:
        import django
        from django.db import connections

        self.vendor, self.workdir, self.restore_jobs = vendor, workdir, restore_jobs
        self.alias = "default" if vendor == "sqlite" else "postgres"
        self.connection = connections[self.alias]
        self.tmp = workdir / "tmp"
        self.tmp.mkdir()
        self.backups = workdir / "backups"
        if vendor == "sqlite":
            self.name = str(workdir / "trials.sqlite3")
        else:
            self.name = f"migrator_trials_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.name}"')
        self.connection.close()
        self.connection.settings_dict["NAME"] = self.name
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "MIGRATOR_TEST_TARGET": f"{self.alias}:{self.name}",
            "MIGRATOR_TEST_SCENARIO": "tests.scenarios.migration_sets.basic",
            "MIGRATOR_TEST_BACKUP_DIR": str(self.backups),
            "TMPDIR": str(self.tmp),
            "PYTHONPATH": str(ROOT),
            "MIGRATOR_TEST_SETTINGS": json.dumps({"RESTORE_JOBS": restore_jobs}),
        }
        del django

    def _admin(self, sql: str) -> None:
        from tests.conftest import _admin_execute  # the suite's CREATE/DROP DATABASE

        _admin_execute(self.alias, sql)

    def drop(self) -> None:
        self.connection.close()
        if self.vendor == "postgresql":
            scratch = self.scratch_databases("migrator_re")  # restore_ and replaced_
            for name in [self.name, *scratch]:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def scratch_databases(self, prefix: str) -> list[str]:
        """Databases named ``prefix...`` that no session is in (a live restore's always
        has one): the parallel route's, left by a killed restore or kept by a swap."""
        if self.vendor != "postgresql":
            return []
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT datname FROM pg_database d WHERE starts_with(datname, %s) AND NOT "
                "EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
                [prefix],
            )
            names = [name for (name,) in cursor.fetchall()]
        self.connection.close()
        return names

    # Commands ------------------------------------------------------------------------------

    def argv(self, operation: str) -> list[str]:
        scripted = ["--noinput", "--yes"]
        return {
            "safemigrate": ["safemigrate", "--noinput"],
            "rollback": ["rollback", "scenarios", "0001", *scripted, "--allow-data-loss"],
            "backup": ["backup"],
            "restore": ["restore", self.backup_id, *scripted],
        }[operation]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )

    def setup(self) -> dict[str, float]:
        """Migrate, fill the big table, take the backup restores use; time each command."""
        self.must(self.run("safemigrate", "--noinput"))
        self.execute("CREATE TABLE bulk (id integer, note varchar(40))")
        if self.vendor == "postgresql":
            self.execute("INSERT INTO bulk SELECT n, md5(n::text) FROM generate_series(1, %s) n")
        else:
            self.execute(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                "INSERT INTO bulk SELECT n, hex(randomblob(16)) FROM s"
            )
        done = self.must(self.run("backup", "--json"))
        self.backup_id = json.loads(done.stdout)["id"]
        self.execute("INSERT INTO bulk VALUES (0, 'after the backup')")
        durations = {}
        for operation in ("rollback", "safemigrate", "backup", "restore"):
            started = time.monotonic()
            self.must(self.run(*self.argv(operation)))
            durations[operation] = time.monotonic() - started
        return durations

    def must(self, done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        if done.returncode != 0:
            raise SystemExit(f"{done.args[3:]} exited {done.returncode}: {done.stderr}")
        return done

    def execute(self, sql: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [ROWS] if "%s" in sql else None)
        self.connection.close()

    # One trial ------------------------------------------------------------------------------

    def trial(self, operation: str, delay: float) -> list[str]:
        if operation == "safemigrate":  # something to apply: the last trial left none
            self.must(self.run(*self.argv("rollback")))
        before = self.bulk_rows()
        child = subprocess.Popen(
            [sys.executable, "-m", "django", *self.argv(operation)],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        looked = self.run("migrationhistory", "--json", "--limit", "50")
        problems = [] if looked.returncode == 0 else [f"migrationhistory exit {looked.returncode}"]
        if looked.returncode == 0:
            running = [
                r["id"] for r in json.loads(looked.stdout)["runs"] if r["outcome"] == "running"
            ]
            problems += [f"runs left running: {running}"] if running else []
        problems += self.lingering()
        problems += self.inconsistencies(operation, before)
        if list(self.tmp.glob("migrator-scratch-*")):
            problems.append("scratch directories left")
        if self.run("safemigrate", "--noinput").returncode != 0:
            problems.append("the next safemigrate failed")
        if operation == "restore" and self.restore_jobs > 1:
            if self.run(*self.argv("restore")).returncode != 0:
                problems.append("the next restore failed")
            elif left := self.scratch_databases("migrator_restore_"):
                problems.append(f"new databases left after the next restore: {left}")
        return problems

    def lingering(self) -> list[str]:
        deadline = time.monotonic() + SETTLE
        while True:
            processes = self.processes()
            sessions = self.sessions()
            if not processes and not sessions or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        found = [f"processes left: {processes}"] if processes else []
        return found + ([f"sessions left: {sessions}"] if sessions else [])

    def processes(self) -> list[int]:
        marks = (str(self.tmp), str(self.backups))
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().split(") ", 1)[1][0]
            except (OSError, IndexError):
                continue
            if state != "Z" and any(mark in cmdline for mark in marks):
                found.append(int(entry.name))
        return found

    def sessions(self) -> int:
        if self.vendor != "postgresql":
            return 0
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()",
                [self.name],
            )
            count = cursor.fetchone()[0]
        self.connection.close()
        return count

    def inconsistencies(self, operation: str, before: int) -> list[str]:
        problems = []
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT app, name FROM django_migrations")
            applied = set(cursor.fetchall())
            cursor.execute("SELECT app_label, name FROM migrator_migrationhash")
            hashed = set(cursor.fetchall())
            introspection = self.connection.introspection
            columns = {
                c.name for c in introspection.get_table_description(cursor, "scenarios_widget")
            }
        self.connection.close()
        for column, migration in COLUMNS.items():
            if (column in columns) != (("scenarios", migration) in applied):
                problems.append(f"column {column} and {migration} disagree")
        if applied != hashed:
            problems.append(f"hashes and django_migrations differ: {sorted(applied ^ hashed)}")
        after = self.bulk_rows()
        allowed = {before, ROWS} if operation == "restore" else {before}
        if after not in allowed:
            problems.append(f"bulk holds {after} rows, expected one of {sorted(allowed)}")
        return problems

    def bulk_rows(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bulk")
            count = cursor.fetchone()[0]
        self.connection.close()
        return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per vendor")
    parser.add_argument("--vendor", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--restore-jobs", type=int, default=1, help="RESTORE_JOBS (default 1)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    chooser = random.Random(seed)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    failed = 0
    print(f"seed {seed}")
    for vendor in args.vendor or ["sqlite", "postgresql"]:
        with tempfile.TemporaryDirectory(prefix="migrator-trials-") as workdir:
            trials = Trials(vendor, Path(workdir), args.restore_jobs)
            try:
                durations = trials.setup()
                print(vendor, "durations", {k: round(v, 2) for k, v in durations.items()})
                counts = dict.fromkeys(OPERATIONS, 0)
                bad = 0
                for number in range(1, args.trials + 1):
                    operation = chooser.choice(OPERATIONS)
                    delay = chooser.uniform(0.05, durations[operation] * 1.1)
                    problems = trials.trial(operation, delay)
                    counts[operation] += 1
                    bad += bool(problems)
                    verdict = "ok" if not problems else "; ".join(problems)
                    print(f"{vendor} {number:3d} {operation:11s} kill at {delay:5.2f}s: {verdict}")
                print(f"{vendor}: {args.trials} trials {counts}, {bad} with a failed check")
                failed += bad
            finally:
                trials.drop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
