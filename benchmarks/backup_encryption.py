"""Encrypted against unencrypted native PostgreSQL backups, and both against ``pg_dump -Fc``.

Builds the database of ``backup_postgres.py`` (hex text that compresses about 2:1; about
1 GB with the defaults), then runs, interleaved round by round so that caches and the
other jobs of a shared machine weigh on all alike:

* ``pg_dump -Fc`` with its default settings (compression level 6: issue 20's yardstick);
* ``backup`` (native, unencrypted: ``pg_dump --compress=1`` plus the row counts);
* ``backup`` with ``MIGRATOR["BACKUP_RECIPIENTS"]`` set (the same, written through age).

It prints the medians, the ratios measured in this run, each child's peak RSS (a fresh
process per backup, Django included) and CPU time (its own, and its tools'). Then it
drills the last encrypted backup once (``backup --verify ID --full`` with the identity)
and reports its time and memory.

    python benchmarks/backup_encryption.py [--accounts 4000000] [--notes 3000000] [--repeat 3]
"""

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.backup_common import child_env, make_project, mb, median, run_child, timed  # noqa: E402
from benchmarks.backup_postgres import Admin, create_source, server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4_000_000)
    parser.add_argument("--notes", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="migrator-bench-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # runs after pgserver stops
    run(options, scratch)


def identity(scratch: Path) -> tuple[str, Path]:
    """A fresh age key pair: the public key, and the identity file (as age-keygen writes)."""
    import pyrage

    secret = pyrage.x25519.Identity.generate()
    path = scratch / "key.txt"
    path.write_text(f"# public key: {secret.to_public()}\n{secret}\n")
    path.chmod(0o600)
    return str(secret.to_public()), path


def run(options: argparse.Namespace, scratch: Path) -> None:
    settings, bin_dir = server(scratch)
    admin = Admin(settings)
    project = make_project(scratch / "project")
    public, key_file = identity(scratch)
    source = "backup_bench_source"
    database = {**settings, "NAME": source}
    plain_env = child_env(project, database, scratch / "plain", bin_dir)
    sealed_env = {
        **child_env(project, database, scratch / "sealed", bin_dir),
        "BENCH_RECIPIENTS": json.dumps([public]),
        "BENCH_IDENTITY_FILE": str(key_file),
    }
    size = create_source(admin, source, plain_env, options)

    direct_file = scratch / "direct.dump"
    pg_dump = [str(Path(bin_dir, "pg_dump")), "-Fc", "--no-password", f"--file={direct_file}"]
    direct, plain, sealed = [], [], []
    for round_number in range(options.repeat):
        direct.append(timed(pg_dump, admin.tool_env(source)))
        plain.append(run_child(plain_env, "native-backup"))
        sealed.append(run_child(sealed_env, "native-backup"))
        print(
            f"round {round_number + 1}: pg_dump -Fc {direct[-1]:.1f} s, backup "
            f"{plain[-1]['seconds']:.1f} s, encrypted {sealed[-1]['seconds']:.1f} s "
            f"(CPU, Python + pg_dump: {cpu(plain[-1])}, {cpu(sealed[-1])})",
            flush=True,
        )
    drill = run_child(sealed_env, "drill", sealed[-1]["id"])
    if not drill["passed"]:
        raise SystemExit(f"the drill failed: {drill['cause']}")
    report(options, size, direct_file.stat().st_size, direct, plain, sealed, drill)


def cpu(result: dict) -> str:
    return f"{result['cpu_seconds']:.1f} + {result['tools_cpu_seconds']:.1f} s"


def report(options, size, dump_size, direct, plain, sealed, drill) -> None:
    base = median(direct)
    plain_time = median([r["seconds"] for r in plain])
    sealed_time = median([r["seconds"] for r in sealed])

    def row(name: str, seconds: float, peak: str, payload: str) -> str:
        return f"| {name} | {seconds:.1f} s | {seconds / base:.2f}x | {payload} | {peak} |"

    print()
    print(
        f"PostgreSQL, {mb(size)} database ({options.accounts:,} + {options.notes:,} rows); "
        f"medians of {options.repeat} interleaved rounds."
    )
    print()
    print("| operation | time | / `pg_dump -Fc` | payload | Python peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    print(row("`pg_dump -Fc` (default settings)", base, "(no Python)", mb(dump_size)))
    print(
        row(
            "`backup` (native)",
            plain_time,
            f"{max(r['peak_rss_mb'] for r in plain):.0f} MB",
            mb(plain[-1]["size"]),
        )
    )
    print(
        row(
            "`backup` (native, encrypted with age)",
            sealed_time,
            f"{max(r['peak_rss_mb'] for r in sealed):.0f} MB",
            mb(sealed[-1]["size"]),
        )
    )
    print(
        f"| `backup --verify ID --full --identity` (drill) | {drill['seconds']:.1f} s | | | "
        f"{drill['peak_rss_mb']:.0f} MB |"
    )
    print()
    print(f"encrypted / unencrypted backup: {sealed_time / plain_time:.3f}")
    for name, rounds in (("unencrypted", plain), ("encrypted", sealed)):
        print(
            f"CPU of an {name} backup (medians): Python "
            f"{median([r['cpu_seconds'] for r in rounds]):.1f} s, pg_dump "
            f"{median([r['tools_cpu_seconds'] for r in rounds]):.1f} s"
        )
    print(
        "per round: "
        + ", ".join(
            f"{s['seconds'] / p['seconds']:.2f}" for s, p in zip(sealed, plain, strict=True)
        )
    )


if __name__ == "__main__":
    main()
