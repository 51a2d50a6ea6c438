"""Shared parts of the backup benchmarks: a throwaway project, data, and measured children.

Each measurement runs in a fresh child process (``python -m benchmarks.backup_common
ACTION ...``) that prints one JSON line with the wall time and the child's peak RSS
(``resource.getrusage``), so every figure is the peak of that one operation, Django's
own footprint included. ``idle`` measures that footprint alone.
"""

import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """\
import json, os
SECRET_KEY = "benchmark"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "migrator", "backupbench"]
DATABASES = {"default": json.loads(os.environ["BENCH_DATABASE"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIGRATOR = {
    "ENVIRONMENT": "benchmark",
    "BACKUP_DIR": os.environ["BENCH_BACKUP_DIR"],
    "PG_BIN_DIR": os.environ.get("BENCH_PG_BIN_DIR") or None,
    "BACKUP_RECIPIENTS": json.loads(os.environ.get("BENCH_RECIPIENTS") or "[]"),
    "BACKUP_IDENTITY_FILE": os.environ.get("BENCH_IDENTITY_FILE") or None,
    "RESTORE_JOBS": json.loads(os.environ.get("BENCH_RESTORE_JOBS") or "null"),
    "PG_DUMP_COMPRESS": int(os.environ.get("BENCH_PG_DUMP_COMPRESS") or 1),
}
if os.environ.get("BENCH_STORAGE"):  # a STORAGES entry: backups go through it
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "backups": json.loads(os.environ["BENCH_STORAGE"]),
    }
    MIGRATOR["BACKUP_STORAGE"] = "backups"
"""

MODELS = """\
from django.db import models


class Account(models.Model):
    branch = models.IntegerField()
    balance = models.BigIntegerField()
    filler = models.CharField(max_length=100)


class Note(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    body = models.TextField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    created = models.DateTimeField()
"""


def make_project(directory: Path) -> Path:
    """Write the throwaway project (settings and one app with two models)."""
    (directory / "backupbench").mkdir(parents=True, exist_ok=True)
    (directory / "bench_settings.py").write_text(SETTINGS)
    (directory / "backupbench" / "__init__.py").write_text("")
    (directory / "backupbench" / "models.py").write_text(MODELS)
    return directory


def child_env(
    project: Path,
    database: dict,
    backup_dir: Path,
    pg_bin_dir: str | None,
    storage: dict | None = None,
) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
        "BENCH_DATABASE": json.dumps(database),
        "BENCH_BACKUP_DIR": str(backup_dir),
        "BENCH_PG_BIN_DIR": pg_bin_dir or "",
        "BENCH_STORAGE": json.dumps(storage) if storage else "",
    }


def run_child(env: dict, *args: str) -> dict:
    """Run one measured action in a fresh process; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.backup_common", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(argv: list[str], env: dict) -> float:
    """Wall time of an external command (the native tools run directly)."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def mb(size: int) -> str:
    return f"{size / 1024 / 1024:,.0f} MB"


# Children -------------------------------------------------------------------------------


def _setup() -> None:
    import django

    django.setup()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return round(usage.ru_utime + usage.ru_stime, 2)


def _report(**values: object) -> None:
    """One JSON line: the values, peak RSS, and CPU seconds of this process and its tools
    (the CPU time a change costs shows through the noise of a shared machine)."""
    print(
        json.dumps(
            {
                **values,
                "peak_rss_mb": round(_peak_mb(), 1),
                "cpu_seconds": _cpu_seconds(resource.RUSAGE_SELF),
                "tools_cpu_seconds": _cpu_seconds(resource.RUSAGE_CHILDREN),
            }
        )
    )


def _child(action: str, *args: str) -> None:
    _setup()
    from django.core.management import call_command

    from migrator import backup, restore

    started = time.perf_counter()
    if action == "idle":
        from django.db import connection

        connection.ensure_connection()
        _report(seconds=0.0)
        return
    if action == "migrate":
        call_command("migrate", run_syncdb=True, verbosity=0)
        _report(seconds=time.perf_counter() - started)
        return
    if action in {"native-backup", "portable-backup"}:
        manifest = backup.create_backup("default", format=action.split("-")[0])
        _report(
            seconds=time.perf_counter() - started,
            id=manifest.id,
            size=manifest.size,
            payload=manifest.payload,
        )
        return
    if action == "verify":
        backup.verify_backup(args[0])
        _report(seconds=time.perf_counter() - started)
        return
    if action == "list":
        _report(seconds=time.perf_counter() - started, ids=[m.id for m in backup.list_backups()])
        return
    if action == "prune":
        pruned = backup.prune_backups(keep=int(args[0]), assume_yes=True)
        _report(seconds=time.perf_counter() - started, deleted=pruned.deleted)
        return
    if action == "drill":
        report = backup.drill_backup(args[0], database="default")
        _report(seconds=time.perf_counter() - started, passed=report.passed, cause=report.cause)
        return
    if action in {"restore", "safe-restore"}:
        # Into another (empty) database than the one backed up: that takes --force.
        restore.restore_backup(
            args[0],
            database="default",
            force=True,
            safety_backup=action == "safe-restore",
            assume_yes=True,
        )
        _report(seconds=time.perf_counter() - started)
        return
    raise SystemExit(f"unknown action {action!r}")


def sqlite_api_copy(source: Path, target: Path) -> float:
    """Python's sqlite3 backup API alone, file to file: the baseline for SQLite."""
    started = time.perf_counter()
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return time.perf_counter() - started


def describe(text: str) -> str:
    return textwrap.dedent(text).strip()


if __name__ == "__main__":
    _child(*sys.argv[1:])
