"""testmigrations against plain ``migrate`` of the same migrations (SQLite), two cases.

- app: one app of 300 generated migrations (``testmigrations benchapp`` / ``migrate benchapp``);
- project: a whole project (``startproject``'s contrib apps, migrator and 150 generated
  migrations), no app labels on either side.

``testmigrations`` applies every migration twice and unapplies it once, so about 3x the
work of ``migrate`` is the floor. Runs are interleaved (migrate, testmigrations, per case,
round after round) so that drift in the machine's speed hits every side alike; each run
is a fresh child process on a fresh database file, and the test database is a file too
(not in-memory SQLite), so that both sides pay the same disk costs.

    python benchmarks/testmigrations_ratio.py [--count 300] [--project-count 150] [--rounds 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generated_app import (  # noqa: E402
    STARTPROJECT_APPS,
    django_admin,
    make_project,
    project_env,
)

TEST_DATABASE_SETTING = """
DATABASES["default"]["TEST"] = {"NAME": os.environ["BENCH_TEST_DB"]}
"""


@dataclass
class Case:
    name: str
    directory: Path
    labels: list[str]
    migrate_times: list[float] = field(default_factory=list)
    roundtrip_times: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return project_env(
            self.directory,
            ROOT,
            BENCH_DB=str(self.directory / "db.sqlite3"),
            BENCH_TEST_DB=str(self.directory / "test.sqlite3"),
        )

    def round(self) -> str:
        (self.directory / "db.sqlite3").unlink(missing_ok=True)
        plain, _ = timed(django_admin("migrate", *self.labels, "--noinput", "-v", "0"), self)
        tested, report = timed(
            django_admin("testmigrations", *self.labels, "--noinput", "--json", "-v", "0"), self
        )
        check_report(report)
        self.migrate_times.append(plain)
        self.roundtrip_times.append(tested)
        self.ratios.append(tested / plain)
        return f"{self.name}: migrate {plain:.2f}s, testmigrations {tested:.2f}s, " + (
            f"ratio {tested / plain:.2f}x"
        )

    def summary(self, target: float) -> str:
        return (
            f"median migrate {statistics.median(self.migrate_times):.2f}s, "
            f"median testmigrations {statistics.median(self.roundtrip_times):.2f}s, "
            f"median ratio {statistics.median(self.ratios):.2f}x (target <= {target:g}x)"
        )


def timed(argv: list[str], case: Case) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=case.env, cwd=case.directory, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # The generated app has no models.py content, so testmigrations' final check
    # reports model changes (exit 2); every round trip itself must pass.
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv[3:])} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done.stdout


def check_report(stdout: str) -> None:
    report = json.loads(stdout)
    if report["counts"]["ok"] + report["counts"]["irreversible"] != len(report["migrations"]):
        raise SystemExit(f"expected only exact round trips, got {report['counts']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="migrations in the app case")
    parser.add_argument("--project-count", type=int, default=150, help="in the project case")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="migrator-bench-") as scratch:
        cases = []
        for name, count, contrib, labels in (
            (
                "app",
                args.count,
                ["django.contrib.contenttypes", "django.contrib.auth"],
                ["benchapp"],
            ),
            ("project", args.project_count, STARTPROJECT_APPS, []),
        ):
            directory = make_project(Path(scratch, name), count=count, contrib=contrib)
            with (directory / "bench_settings.py").open("a") as settings_file:
                settings_file.write(TEST_DATABASE_SETTING)
            cases.append(Case(name, directory, labels))
        for number in range(1, args.rounds + 1):
            print(f"round {number}: " + "; ".join(case.round() for case in cases), flush=True)
        print(f"app, {args.count} migrations, {args.rounds} rounds: " + cases[0].summary(3.0))
        print(
            f"project, contrib apps + {args.project_count} migrations, {args.rounds} rounds: "
            + cases[1].summary(4.0)
        )


if __name__ == "__main__":
    main()
