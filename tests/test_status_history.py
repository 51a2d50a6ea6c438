import json
from datetime import timedelta

from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import F

from migrator.models import MigrationHash, Run
from tests.utils import run_command


def test_status_check_gates_a_deploy(db_alias):
    out, err, code = run_command("migrationstatus", "--check", database=db_alias)
    assert code == 1
    assert "ledger.0005_normalise_account_names" in out
    assert f"Database {db_alias!r} is not ready: migrations are pending." in err
    out, err, code = run_command("migrationstatus", "--check", "--json", database=db_alias)
    status = json.loads(out)  # the failure's document: the status, with why it failed
    assert (code, status["ok"], status["outcome"], status["exit_code"]) == (1, False, "failed", 1)
    assert status["error"] == f"Database {db_alias!r} is not ready: migrations are pending."
    assert "ledger.0005_normalise_account_names" in status["pending"]
    run_command("safemigrate", database=db_alias)
    out, err, code = run_command("migrationstatus", "--check", "--json", database=db_alias)
    status = json.loads(out)
    assert (code, status["ok"], status["pending"], status["lock_holder"]) == (0, True, [], None)
    assert status["last_run"]["outcome"] == "succeeded"


def test_status_check_exits_2_when_history_is_wrong(db_alias):
    run_command("safemigrate", database=db_alias)
    MigrationHash.objects.using(db_alias).filter(
        app_label="ledger", name="0002_entry_email"
    ).update(checksum="sha256:1:" + "0" * 64)
    out, err, code = run_command("migrationstatus", "--check", database=db_alias)
    assert code == 2
    assert "ledger.0002_entry_email" in out
    assert "history is wrong" in err
    out, err, code = run_command("verifymigrations", "--json", database=db_alias)
    report = json.loads(out)
    assert (code, report["outcome"], report["exit_code"]) == (2, "failed", 2)
    assert report["error"] == (
        f"1 integrity error(s) on {db_alias!r}; the document's problems say what to do about each."
    )
    assert [p["migration"] for p in report["problems"]] == ["ledger.0002_entry_email"]


def test_history_lists_runs_newest_first(db_alias, scenario):
    scenario("failing")
    assert run_command("safemigrate", "ledger", database=db_alias)[2] == 0
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 5
    out, _, code = run_command("migrationhistory", database=db_alias)
    assert code == 0
    assert out.index("failed") < out.index("succeeded")
    assert "failed at scenarios.0002_breaks" in out
    assert "apply ledger.0004_remove_entry_memo" in out
    out, _, _ = run_command("migrationhistory", "--json", "--limit", "1", database=db_alias)
    (run,) = json.loads(out)["runs"]
    assert (run["outcome"], run["failed_migration"]) == ("failed", "scenarios.0002_breaks")
    assert [m["migration"] for m in run["migrations"]] == ["scenarios.0001_initial"]


def test_history_with_a_limit_beyond_any_sql_integer_shows_every_run(db_alias):
    assert run_command("safemigrate", "ledger", "0001", database=db_alias)[2] == 0
    out, err, code = run_command(
        "migrationhistory", "--json", "--limit", str(2**64), database=db_alias
    )
    assert (code, err) == (0, "")
    assert [run["command"] for run in json.loads(out)["runs"]] == ["safemigrate"]


def test_history_on_a_database_never_migrated(db_alias):
    assert run_command("migrationhistory", database=db_alias) == (
        f"No runs recorded on {db_alias!r} yet.\n",
        "",
        0,
    )
    assert run_command("migrationhistory", "--limit", "-1", database=db_alias)[2] == 1


def test_history_shows_a_runs_risk_findings_as_lines(db_alias):
    assert run_command("safemigrate", "ledger", "0003", database=db_alias)[2] == 0
    with connections[db_alias].cursor() as cursor:
        cursor.execute("INSERT INTO ledger_account (name) VALUES ('Acme')")
        cursor.execute("SELECT id FROM ledger_account")
        account = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO ledger_entry (account_id, amount, memo, created, email) "
            "VALUES (%s, 1, 'm', CURRENT_TIMESTAMP, '')",
            [account],
        )
    assert run_command("safemigrate", "ledger", database=db_alias)[2] == 0
    out, _, code = run_command("migrationhistory", "--limit", "1", database=db_alias)
    assert code == 0
    lines = out.splitlines()
    risks = lines.index("    risks:")
    assert lines[risks + 1 : risks + 3] == [
        "      ledger.0004_remove_entry_memo: ML101 danger, column memo of ledger_entry (1 row)",
        "      ledger.0004_remove_entry_memo: ML403 warning, column memo of ledger_entry (1 row)",
    ]
    assert "{'" not in out


def test_status_of_a_database_migrated_by_plain_migrate_is_one_line(db_alias):
    assert run_command("migrate", database=db_alias, verbosity=0)[2] == 0
    out, err, code = run_command("migrationstatus", database=db_alias)
    assert (code, err) == (0, "")
    warnings = [line for line in out.splitlines() if line.startswith("  warning: ")]
    assert len(warnings) == 1
    applied_count = len(MigrationRecorder(connections[db_alias]).applied_migrations())
    assert warnings[0].startswith(
        f"  warning: [migrator.W001] {applied_count} applied migration(s) on {db_alias!r} "
        "have no recorded hash "
    )
    assert warnings[0].endswith(
        f"Run 'python manage.py verifymigrations --baseline --database {db_alias}' "
        "to record the current files."
    )


def test_status_counts_an_applied_squash_once_as_the_plan_does(db_alias, scenario):
    scenario("integrity_squashed")
    document = json.loads(run_command("safemigrate", "--plan", "--json", database=db_alias)[0])
    planned = [migration["migration"] for migration in document["plan"]]
    assert "scenarios.0001_squashed_0002_second" in planned
    assert run_command("safemigrate", database=db_alias)[2] == 0
    out, _, _ = run_command("migrationstatus", database=db_alias)
    assert f"  applied: {len(planned)} migration(s) (a squash counts once" in out


def test_status_with_its_backup_store_out_of_reach_still_gates_the_deploy(
    db_alias, settings, tmp_path
):
    not_a_directory = tmp_path / "bucket"
    not_a_directory.write_text("")
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(not_a_directory)},
        },
    }
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
    run_command("safemigrate", "--no-backup", database=db_alias)

    out, err, code = run_command("migrationstatus", "--check", database=db_alias)

    assert (code, err) == (0, ""), err
    [line] = [line for line in out.splitlines() if line.startswith("  latest backup: ")]
    assert line.startswith("  latest backup: unknown: Cannot ")
    assert "storage 'backups'" in line, line
    assert "  integrity: every applied migration matches its file" in out
    document = json.loads(run_command("migrationstatus", "--json", database=db_alias)[0])
    assert document["latest_backup"] is None
    assert document["backup_store_error"] == line.removeprefix("  latest backup: unknown: ")


def test_runs_are_in_the_databases_order_whatever_the_hosts_clocks(db_alias):
    """Run #2 came from a host whose clock was 5 minutes ahead: #3 is still the last."""
    for target in ("0001", "0002", "0003"):
        assert run_command("safemigrate", "ledger", target, database=db_alias)[2] == 0
    first, ahead, last = Run.objects.using(db_alias).order_by("id")
    Run.objects.using(db_alias).filter(pk=ahead.pk).update(
        started_at=F("started_at") + timedelta(minutes=5),
        finished_at=F("finished_at") + timedelta(minutes=5),
    )

    out, _, _ = run_command("migrationhistory", "--json", database=db_alias)
    assert [run["id"] for run in json.loads(out)["runs"]] == [last.pk, ahead.pk, first.pk]
    out, _, _ = run_command("migrationstatus", "--json", database=db_alias)
    assert json.loads(out)["last_run"]["id"] == last.pk
    out, _, code = run_command("rollback", "--last", "--plan", database=db_alias)
    assert code == 0
    assert f"  Undoes safemigrate run #{last.pk} (succeeded)." in out
    assert "ledger.0003" in out
    assert "ledger.0002" not in out
