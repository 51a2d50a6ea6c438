"""Native PostgreSQL backups in object storage: django-storages' S3 backend against moto's server.

Builds a PostgreSQL database (``--accounts``/``--notes`` rows of the backup benchmarks' two
models; the defaults make about 1 GB), starts ``moto.server`` as its own process (S3 over
HTTP on loopback, so the measured process only talks to it), then in fresh child
processes: ``backup`` to a directory and to S3 (the ratio of their times), ``--list``,
``--verify`` (re-hash streamed from S3), ``--verify --full`` (the restore drill, into a
scratch database), ``restore`` from S3 into an empty database, and ``--prune``. Each
line gives the child's wall time and peak RSS (Django included; ``idle`` is a child that
only connects): memory must stay flat whatever the payload's size, under 100 MB.

    python benchmarks/backup_s3.py [--accounts 4000000] [--notes 3000000]
"""

import argparse
import atexit
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.backup_common import child_env, make_project, mb, run_child  # noqa: E402
from benchmarks.backup_postgres import Admin, create_source, server  # noqa: E402
from tests.s3 import MotoServer  # noqa: E402

LIMIT_MB = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4_000_000)
    parser.add_argument("--notes", type=int, default=3_000_000)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="migrator-bench-s3-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # after pgserver stops
    moto = MotoServer.start()
    try:
        run(options, scratch, moto)
    finally:
        moto.stop()


def run(options: argparse.Namespace, scratch: Path, moto: MotoServer) -> None:
    settings, bin_dir = server(scratch)
    admin = Admin(settings)
    project = make_project(scratch / "project")
    storage = moto.storage(moto.new_bucket())

    def env_for(name: str, *, s3: bool = True) -> dict:
        database = {**settings, "NAME": name}
        return child_env(project, database, scratch / "backups", bin_dir, storage if s3 else None)

    source = "backup_s3_source"
    create_source(admin, source, env_for(source), options)

    results = {"idle": run_child(env_for(source), "idle")}
    results["backup to a directory"] = run_child(env_for(source, s3=False), "native-backup")
    first = results["backup to S3"] = run_child(env_for(source), "native-backup")
    print(f"Payload: {mb(first['size'])}")
    results["backup --list"] = run_child(env_for(source), "list")
    results["backup --verify"] = run_child(env_for(source), "verify", first["id"])
    drill = results["backup --verify --full"] = run_child(env_for(source), "drill", first["id"])
    if not drill["passed"]:
        raise SystemExit(f"the drill failed: {drill['cause']}")
    target = "backup_s3_target"
    admin.create(target)
    results["restore from S3"] = run_child(env_for(target), "restore", first["id"])
    restored = admin.execute("SELECT count(*) FROM backupbench_note", database=target)[0][0]
    admin.drop(target)
    results["second backup to S3"] = run_child(env_for(source), "native-backup")
    results["backup --prune --keep 1"] = run_child(env_for(source), "prune", "1")
    admin.drop(source)

    print(f"{'operation':<26} {'seconds':>8} {'peak RSS':>9}")
    for name, result in results.items():
        print(f"{name:<26} {result['seconds']:>8.1f} {result['peak_rss_mb']:>6.1f} MB")
    growth = first["peak_rss_mb"] - results["backup --list"]["peak_rss_mb"]
    print(f"backup to S3 above backup --list (boto3 loaded, the bucket listed): {growth:.1f} MB")
    ratio = first["seconds"] / results["backup to a directory"]["seconds"]
    print(f"S3 / directory backup time: {ratio:.2f}")
    print(f"rows restored: {restored:,} notes of {options.notes:,}")
    assert results["backup --prune --keep 1"]["deleted"] == [first["id"]]
    worst = max(result["peak_rss_mb"] for result in results.values())
    print(f"largest peak RSS: {worst:.1f} MB; target < {LIMIT_MB} MB")
    if worst >= LIMIT_MB:
        raise SystemExit(f"peak {worst:.1f} MB is over the {LIMIT_MB} MB target")


if __name__ == "__main__":
    main()
