"""safemigrate against plain migrate: 300 generated migrations, empty SQLite database.

Runs both commands interleaved (alternating which goes first) as child processes of
this one, each on a fresh database file, and prints the median of the per-pair ratios.
The project runs with DEBUG off, as deploys do; ``--debug`` turns it on, as on a laptop.
Figures vary by a few percent from run to run on a shared machine: use more rounds on a
quiet one.

    python -m benchmarks.overhead [--migrations 300] [--rounds 15] [--debug]
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.generated_app import django_admin, make_project, project_env

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "migrate": ["migrate", "--verbosity", "0", "--noinput"],
    "safemigrate": ["safemigrate", "--verbosity", "0", "--noinput", "--no-backup"],
}


def timed_run(directory: Path, command: list[str], database: Path, debug: bool) -> float:
    database.unlink(missing_ok=True)
    env = project_env(directory, ROOT, BENCH_DB=str(database), BENCH_DEBUG="1" if debug else "0")
    started = time.perf_counter()
    subprocess.run(django_admin(*command), env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--debug", action="store_true", help="run the project with DEBUG on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = make_project(Path(scratch), args.migrations)
        database = directory / "bench.sqlite3"
        timed_run(directory, COMMANDS["migrate"], database, args.debug)  # warm the file cache
        ratios, times = [], {name: [] for name in COMMANDS}
        for round_number in range(args.rounds):
            order = list(COMMANDS) if round_number % 2 == 0 else list(reversed(COMMANDS))
            pair = {
                name: timed_run(directory, COMMANDS[name], database, args.debug) for name in order
            }
            for name, seconds in pair.items():
                times[name].append(seconds)
            ratios.append(pair["safemigrate"] / pair["migrate"])
    debug = "on" if args.debug else "off"
    print(f"{args.migrations} migrations, SQLite, DEBUG {debug}, {args.rounds} interleaved rounds")
    for name, values in times.items():
        print(f"  {name:12} median {statistics.median(values):.3f}s")
    print(f"  median ratio safemigrate/migrate: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
