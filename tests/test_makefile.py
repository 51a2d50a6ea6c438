"""The Makefile's deploy-runbook targets, run on the demo project in a fresh copy of the tree.

The copy holds what a checkout would (tracked and not-ignored files; no database, no
backups, no caches), and the database is a new SQLite file from ``DATABASE_URL``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    target = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def make(checkout, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MIGRATOR_", "DJANGO_")) and key != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MIGRATOR_BACKUP_DIR=str(tmp_path / "backups"),
        PYTHONDONTWRITEBYTECODE="1",
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    return run


def test_plan_check_migrate_check_on_a_fresh_checkout(make, tmp_path):
    planned = make("migrate-plan")
    assert planned.returncode == 0, planned.stderr
    assert "Planned operations:" in planned.stdout
    assert "  ledger.0004_remove_entry_memo [after_deploy]\n" in planned.stdout

    pending = make("migrate-check")
    assert pending.returncode != 0
    assert "migrations are pending" in pending.stderr

    migrated = make("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying ledger.0005_normalise_account_names... OK" in migrated.stdout

    ready = make("migrate-check")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "pending: none" in ready.stdout


def test_migrate_test_round_trips_the_demo(make):
    tested = make("migrate-test", "APPS=ledger")
    assert tested.returncode == 0, tested.stderr
    assert "ledger.0005_normalise_account_names: irreversible, skipped" in tested.stdout
    assert "  ledger.0004_remove_entry_memo... ok (" in tested.stderr


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (
            ("migrate", "YES=1", "DATABASE=other"),
            "manage.py safemigrate --database other --noinput --yes",
        ),
        (("migrate",), "manage.py safemigrate --database default --noinput"),
        (("migrate-plan",), "manage.py safemigrate --plan --database default"),
        (
            ("migrate", "STAGE=before-deploy", "YES=1"),
            "manage.py safemigrate --database default --noinput --yes --stage before-deploy",
        ),
        (
            ("migrate-plan", "STAGE=after-deploy"),
            "manage.py safemigrate --plan --database default --stage after-deploy",
        ),
        (("migrate-down", "YES=1"), "manage.py rollback --last --database default --noinput --yes"),
        (
            ("migrate-test", "SINCE=origin/main", "APPS=ledger"),
            "manage.py testmigrations ledger --database default --noinput --since origin/main",
        ),
        (("migrate-logs",), "manage.py migrationhistory --database default"),
        (
            ("backup", "ARGS=--format portable"),
            "manage.py backup --database default --format portable",
        ),
    ],
)
def test_targets_run_the_documented_commands(make, args, command):
    shown = make("-n", *args)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"{sys.executable} {command}"


def test_the_documented_ci_risk_gate_stops_the_demo_plan(make, tmp_path):
    gate = _documented_block("risk-gate")
    plan_file = tmp_path / "plan.json"
    plan = make("--silent", "migrate-plan", "ARGS=--json")
    assert plan.returncode == 0, plan.stderr
    plan_file.write_text(plan.stdout)
    stopped = subprocess.run(
        [sys.executable, "-c", gate, str(plan_file)], capture_output=True, text=True
    )
    assert (stopped.returncode, stopped.stdout) == (
        1,
        "ledger.0005_normalise_account_names: ML201 Raw Python operation: cannot be rolled back.\n",
    )
    assert make("migrate").returncode == 0
    plan_file.write_text(make("--silent", "migrate-plan", "ARGS=--json").stdout)
    passed = subprocess.run(
        [sys.executable, "-c", gate, str(plan_file)], capture_output=True, text=True
    )
    assert (passed.returncode, passed.stdout) == (0, "")


def _documented_block(marker: str) -> str:
    """The code block between <!-- marker:start --> and <!-- marker:end --> in docs/deploy.md."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split(f"<!-- {marker}:start -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    return block.strip().removeprefix("```python").removesuffix("```")


def test_manage_is_overridable(make):
    shown = make("-n", "migrate-check", "MANAGE=django-admin")
    assert [line.rstrip() for line in shown.stdout.splitlines()] == [
        "django-admin verifymigrations --database default",
        "django-admin migrationstatus --check --database default",
    ]
