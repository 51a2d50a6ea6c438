"""safemigrate against plain migrate: 300 generated migrations, empty SQLite database.

Runs both commands interleaved (alternating which goes first) as child processes of
this one, each on a fresh database file, and prints the median of the per-pair ratios.
The project runs with DEBUG off, as deploys do; ``--debug`` turns it on, as on a laptop.
Wall-clock time is the figure; CPU time (user + system of the child) is printed beside it
because, on a loaded shared machine, wall-clock ratios vary by several percent from run to
run while CPU ratios hold: use more rounds, or a quiet machine, for the wall-clock one.

``--instructions`` counts instead the instructions each command executes, once each under
valgrind's callgrind with a fixed hash seed: whatever else the machine does, the counts
move by a few tenths of a percent from run to run (the ratio by about 0.002), so a change's
cost shows with little noise (the work of the disk's flushes is not counted, and valgrind
makes each run some 50 times slower).

``--after-migrator`` makes the app depend on migrator: ``migrate`` then makes migrator's
tables before the app's, as ``safemigrate`` always does (by label order it makes them after
"benchapp"'s, and SQLite re-reads a smaller schema at each of the app's table rebuilds).

    python -m benchmarks.overhead [--migrations 300] [--rounds 15] [--debug] [--instructions]
        [--after-migrator]
"""

import argparse
import re
import resource
import shutil
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


def timed_run(
    directory: Path, command: list[str], database: Path, debug: bool
) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one child run on a fresh database."""
    database.unlink(missing_ok=True)
    env = project_env(directory, ROOT, BENCH_DB=str(database), BENCH_DEBUG="1" if debug else "0")
    cpu_before = _children_cpu()
    started = time.perf_counter()
    subprocess.run(django_admin(*command), env=env, check=True, capture_output=True)
    return time.perf_counter() - started, _children_cpu() - cpu_before


def instructions(directory: Path, command: list[str], database: Path, debug: bool) -> int:
    """Instructions one child run executes on a fresh database (valgrind's callgrind)."""
    database.unlink(missing_ok=True)
    env = project_env(directory, ROOT, BENCH_DB=str(database), BENCH_DEBUG="1" if debug else "0")
    env["PYTHONHASHSEED"] = "0"  # the same dict and set orders, so the same work, every time
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={directory / 'callgrind.out'}",
    ]
    done = subprocess.run(
        [*valgrind, *django_admin(*command)], env=env, check=True, capture_output=True, text=True
    )
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def _project(args: argparse.Namespace) -> str:
    order = ", the app after migrator" if args.after_migrator else ""
    return f"{args.migrations} migrations{order}, SQLite, DEBUG {'on' if args.debug else 'off'}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--debug", action="store_true", help="run the project with DEBUG on")
    parser.add_argument(
        "--after-migrator",
        action="store_true",
        help="the app depends on migrator, so that migrate too makes migrator's tables first",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count each command's instructions once under valgrind instead of timing rounds",
    )
    args = parser.parse_args()
    if args.instructions:
        count_instructions(args)
        return
    measures = ("wall", "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        directory = make_project(Path(scratch), args.migrations, after_migrator=args.after_migrator)
        database = directory / "bench.sqlite3"
        timed_run(directory, COMMANDS["migrate"], database, args.debug)  # warm the file cache
        ratios = {measure: [] for measure in measures}
        times = {(name, measure): [] for name in COMMANDS for measure in measures}
        for round_number in range(args.rounds):
            order = list(COMMANDS) if round_number % 2 == 0 else list(reversed(COMMANDS))
            pair = {}
            for name in order:
                seconds = timed_run(directory, COMMANDS[name], database, args.debug)
                pair[name] = dict(zip(measures, seconds, strict=True))
            for (name, measure), values in times.items():
                values.append(pair[name][measure])
            for measure, values in ratios.items():
                values.append(pair["safemigrate"][measure] / pair["migrate"][measure])
    print(f"{_project(args)}, {args.rounds} interleaved rounds")
    for measure in measures:
        medians = ", ".join(
            f"{name} {statistics.median(times[name, measure]):.3f}s" for name in COMMANDS
        )
        ratio = statistics.median(ratios[measure])
        print(f"  {measure:4} medians: {medians}; median ratio safemigrate/migrate {ratio:.3f}")


def count_instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as scratch:
        directory = make_project(Path(scratch), args.migrations, after_migrator=args.after_migrator)
        database = directory / "bench.sqlite3"
        timed_run(directory, COMMANDS["migrate"], database, args.debug)  # as the rounds do
        counts = {
            name: instructions(directory, command, database, args.debug)
            for name, command in COMMANDS.items()
        }
    print(f"{_project(args)}, instructions (callgrind)")
    print(
        f"  migrate {counts['migrate']:,}, safemigrate {counts['safemigrate']:,}; "
        f"ratio safemigrate/migrate {counts['safemigrate'] / counts['migrate']:.3f}"
    )


if __name__ == "__main__":
    main()
