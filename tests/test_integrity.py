"""Integrity: no applied migration may change or vanish unnoticed (issue 4).

Each test copies a migration set into a fresh package under tmp_path, so that it can
edit, delete and add files; the scenarios app's MIGRATION_MODULES points at the copy.
"""

import importlib
import json
import shutil
from pathlib import Path

import pytest
from django.core import checks as django_checks
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from migrator import checks, integrity
from migrator.exceptions import IntegrityViolation
from migrator.models import MigrationHash, Run
from tests.conftest import SETS
from tests.utils import applied, own_migrations, run_command

EDIT = b"# an innocent-looking comment\n"


def append(path: Path, content: bytes = EDIT) -> bytes:
    """Edit a file as a developer would; return what it was before."""
    before = path.read_bytes()
    path.write_bytes(before + content)
    return before


def verify(db_alias: str, *args: str, **options) -> tuple[str, str, int]:
    return run_command("verifymigrations", *args, database=db_alias, **options)


# 1. An edited applied migration -----------------------------------------------------------


def test_edited_applied_migration_stops_verify_and_safemigrate_until_undone(
    db_alias, migration_set
):
    copy = migration_set("integrity_linear")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    run_id = Run.objects.using(db_alias).get(command="safemigrate").pk
    before = append(copy / "0001_initial.py")

    out, err, code = verify(db_alias)
    assert code == 2
    assert "Changed after they were applied (1):" in out
    assert "[migrator.E001] scenarios.0001_initial (" in out
    assert f"hash recorded by run #{run_id}" in out
    assert "--accept scenarios.0001_initial --reason" in out
    assert err == f"1 integrity error(s) on {db_alias!r}; see above for what to do about each.\n"

    out, err, code = run_command("safemigrate", database=db_alias)
    assert (out, code) == ("", 2)
    first, problem = err.splitlines()
    assert first == f"Integrity check failed on {db_alias!r}: 1 problem(s); nothing was changed."
    recorded = (
        MigrationHash.objects.using(db_alias)
        .get(app_label="scenarios", name="0001_initial")
        .checksum
    )
    current = integrity.file_hash(copy / "0001_initial.py")
    for expected in (
        f"scenarios.0001_initial ({copy / '0001_initial.py'}) changed after it was applied",
        f"recorded {integrity.short(recorded)}, now {integrity.short(current)}",
        f"hash recorded by run #{run_id}",
        "Restore the file from version control",
        "'python manage.py verifymigrations --accept scenarios.0001_initial --reason \"...\"'",
    ):
        assert expected in problem
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_second"]  # 0003 not applied
    # Nothing to do is no excuse: the edit still stops the run.
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 2

    (copy / "0001_initial.py").write_bytes(before)
    assert verify(db_alias)[2] == 0
    assert run_command("safemigrate", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_second", "0003_third"]


def test_json_report_has_both_hashes_and_when(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    append(copy / "0002_second.py")
    out, _, code = verify(db_alias, "--json")
    document = json.loads(out)
    assert code == 2
    assert (document["ok"], document["errors"], document["warnings"]) == (False, 1, 0)
    [problem] = document["problems"]
    record = MigrationHash.objects.using(db_alias).get(app_label="scenarios", name="0002_second")
    assert problem == {
        **problem,
        "kind": "changed",
        "severity": "error",
        "id": "migrator.E001",
        "migration": "scenarios.0002_second",
        "recorded_hash": record.checksum,
        "current_hash": integrity.file_hash(copy / "0002_second.py"),
        "run_id": record.run_id,
        "third_party": False,
    }
    row = MigrationRecorder(connections[db_alias]).migration_qs.get(
        app="scenarios", name="0002_second"
    )
    assert problem["applied_at"] == row.applied.isoformat()
    assert record.checksum.startswith("sha256:1:")
    assert len(record.checksum) == len("sha256:1:") + 64


# 4. Line endings ----------------------------------------------------------------------------


def test_crlf_checkout_of_the_same_files_verifies_clean(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    for path in copy.glob("0*.py"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    out, _, code = verify(db_alias)
    assert code == 0
    assert out.startswith(f"No integrity problems on {db_alias!r}")
    assert run_command("safemigrate", database=db_alias)[2] == 0
    # Only line endings are forgiven: one changed character is not.
    path = copy / "0003_third.py"
    path.write_bytes(path.read_bytes().replace(b"varchar(20)", b"varchar(21)"))
    assert verify(db_alias)[2] == 2


def test_hash_normalises_line_endings_only(tmp_path):
    lf, crlf, cr = (tmp_path / name for name in ("lf.py", "crlf.py", "cr.py"))
    lf.write_bytes(b"a = 1\nb = 2\n")
    crlf.write_bytes(b"a = 1\r\nb = 2\r\n")
    cr.write_bytes(b"a = 1\rb = 2\r")
    assert integrity.file_hash(lf) == integrity.file_hash(crlf) == integrity.file_hash(cr)
    lf.write_bytes(b"a = 1\nb = 2 \n")
    assert integrity.file_hash(lf) != integrity.file_hash(crlf)


# 2. Missing files and squashes --------------------------------------------------------------


def test_deleted_applied_migration_is_missing(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    (copy / "0003_third.py").unlink()
    out, _, code = verify(db_alias)
    assert code == 2
    assert "Applied, but the file is missing (1):" in out
    assert "[migrator.E002] scenarios.0003_third was applied (" in out
    _, err, code = run_command("safemigrate", database=db_alias)
    assert code == 2
    assert "scenarios.0003_third was applied (" in err
    assert (
        "Restore the file from version control; if a release removed it, forget it with "
        "'python manage.py safemigrate scenarios --prune'."
    ) in err


def test_deleted_dependency_of_another_migration_is_exit_2(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    (copy / "0002_second.py").unlink()
    for command in ("verifymigrations", "safemigrate"):
        _, err, code = run_command(command, database=db_alias)
        assert code == 2
        assert "('scenarios', '0002_second')" in err
        assert "Restore the missing migration file from version control." in err
    out, err, code = run_command("check")  # every manage.py command's checks: no traceback
    assert code == 1
    assert "(migrator.E002) Migration scenarios.0003_third dependencies reference " in err


def test_squash_applied_then_replaced_files_deleted_verifies_clean(db_alias, migration_set):
    copy = migration_set("integrity_squashed")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios") == [
        "0001_initial",
        "0002_second",
        "0001_squashed_0002_second",
    ]
    assert verify(db_alias)[2] == 0
    (copy / "0001_initial.py").unlink()
    (copy / "0002_second.py").unlink()
    assert verify(db_alias)[:3:2] == (
        f"No integrity problems on {db_alias!r} "
        f"({3 + own_migrations()} applied migration(s) checked).\n",
        0,
    )
    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    append(copy / "0001_squashed_0002_second.py")  # the squash is what ran: it is checked
    out, _, code = verify(db_alias)
    assert code == 2
    assert "scenarios.0001_squashed_0002_second (" in out


def test_database_migrated_through_replaced_files_verifies_against_the_squash(
    db_alias, migration_set
):
    squash = "0001_squashed_0002_second.py"
    copy = migration_set("integrity_squashed", without=(squash,))
    run_command("safemigrate", "scenarios", database=db_alias)
    shutil.copy(SETS / "integrity_squashed" / squash, copy / squash)  # the developer squashes
    importlib.invalidate_caches()
    assert verify(db_alias)[2] == 0
    assert run_command("safemigrate", "scenarios", database=db_alias, verbosity=0)[2] == 0
    (copy / "0001_initial.py").unlink()
    (copy / "0002_second.py").unlink()
    assert verify(db_alias)[2] == 0
    assert run_command("safemigrate", "scenarios", database=db_alias, verbosity=0)[2] == 0
    # The squash never ran here; --baseline records its file, edits are caught from then on.
    out, _, code = verify(db_alias, "--baseline")
    assert code == 0
    run = Run.objects.using(db_alias).get(command="verifymigrations")
    assert run.details == {"baseline": ["scenarios.0001_squashed_0002_second"]}
    append(copy / squash)
    assert verify(db_alias)[2] == 2


def test_squash_marked_applied_by_a_later_run_gets_its_hash(db_alias, migration_set):
    squash = "0001_squashed_0002_second.py"
    copy = migration_set("integrity_squashed", without=(squash,))
    run_command("safemigrate", "scenarios", "0001", database=db_alias)
    shutil.copy(SETS / "integrity_squashed" / squash, copy / squash)
    importlib.invalidate_caches()
    # Partially applied squash: Django applies 0002, then marks the squash applied.
    assert run_command("safemigrate", database=db_alias, verbosity=0)[2] == 0
    assert MigrationHash.objects.using(db_alias).get(
        app_label="scenarios", name="0001_squashed_0002_second"
    ).checksum == integrity.file_hash(copy / squash)


# 3. Adopting a database migrated by plain migrate -------------------------------------------


def test_plain_migrate_adoption_baseline_edit_and_accept(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    assert run_command("migrate", "scenarios", database=db_alias, verbosity=0)[2] == 0
    assert not integrity.has_hash_table(connections[db_alias])  # migrator never ran here

    out, _, code = verify(db_alias)
    assert code == 0
    assert "Unverified (applied without a recorded hash) (3):" in out
    assert "[migrator.W001] scenarios.0001_initial was applied (" in out
    assert "but it has no recorded hash; edits go unnoticed." in out
    assert "To do: Run 'python manage.py verifymigrations --baseline' to record" in out
    out, _, code = run_command("safemigrate", database=db_alias, verbosity=1)
    assert code == 0
    assert (
        f"3 applied migration(s) on {db_alias!r} have no recorded hash "
        "(scenarios.0001_initial, scenarios.0002_second, scenarios.0003_third)"
    ) in out
    assert f"verifymigrations --baseline --database {db_alias}" in out

    out, _, code = verify(db_alias, "--baseline")
    run = Run.objects.using(db_alias).get(command="verifymigrations")
    assert code == 0
    assert out.splitlines()[0] == (
        f"Recorded the hashes of 3 applied migration(s) on {db_alias!r} (run #{run.pk})."
    )
    assert run.outcome == "succeeded"
    assert run.details == {
        "baseline": ["scenarios.0001_initial", "scenarios.0002_second", "scenarios.0003_third"]
    }
    assert verify(db_alias)[0].startswith(f"No integrity problems on {db_alias!r}")
    assert verify(db_alias, "--baseline")[0].startswith("Every applied migration")

    old = integrity.file_hash(copy / "0002_second.py")
    append(copy / "0002_second.py")
    new = integrity.file_hash(copy / "0002_second.py")
    assert verify(db_alias)[2] == 2
    _, err, code = verify(db_alias, "--accept", "scenarios.0002_second")
    assert (code, err) == (
        1,
        "--accept needs --reason TEXT saying why the applied file was edited.\n",
    )
    out, _, code = verify(
        db_alias, "--accept", "scenarios.0002_second", "--reason", "fixed a typo in a comment"
    )
    accepted = Run.objects.using(db_alias).filter(command="verifymigrations").first()
    assert code == 0
    assert out.splitlines()[0] == (
        f"Accepted scenarios.0002_second: {integrity.short(old)} -> {integrity.short(new)} "
        f"(run #{accepted.pk})."
    )
    assert accepted.details == {
        "accepted": "scenarios.0002_second",
        "old_hash": old,
        "new_hash": new,
        "reason": "fixed a typo in a comment",
    }
    assert verify(db_alias)[2] == 0
    history, _, _ = run_command("migrationhistory", database=db_alias)
    assert "    accepted: scenarios.0002_second\n" in history
    assert "    reason: fixed a typo in a comment\n" in history


def test_a_secret_typed_into_an_acceptance_reason_is_masked_everywhere(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    append(copy / "0002_second.py")
    reason = "rotated token=Tok3n-xyz as asked"

    out, err, code = verify(
        db_alias, "--accept", "scenarios.0002_second", "--reason", reason, "--json"
    )

    assert (code, err) == (0, "")
    assert json.loads(out)["accepted"]["reason"] == "rotated token=*** as asked"
    run = Run.objects.using(db_alias).get(command="verifymigrations")
    assert "Tok3n-xyz" not in json.dumps([run.details, run.arguments])


def test_accept_refuses_what_it_cannot_accept(db_alias, migration_set):
    migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", "0001", database=db_alias)
    cases = [
        (
            ("--accept", "scenarios.0003_third", "--reason", "r"),
            "scenarios.0003_third is not applied",
        ),
        (
            ("--accept", "scenarios.0099", "--reason", "r"),
            "No migration 'scenarios.0099' on disk; give app_label.migration_name (or the start "
            "of the name) as 'showmigrations' lists it.\n",
        ),
        (
            ("--accept", "scenarios", "--reason", "r"),
            "Name the migration as app_label.migration_name",
        ),
        (("--reason", "why"), "--reason goes with --accept"),
    ]
    for args, message in cases:
        _, err, code = verify(db_alias, *args)
        assert code == 1, args
        assert message in err
    out, _, code = verify(db_alias, "--accept", "scenarios.0001", "--reason", "no-op")
    assert code == 0
    assert "already matches its recorded hash" in out
    assert not Run.objects.using(db_alias).filter(command="verifymigrations").exists()


# 5. Conflicts and inconsistent history -------------------------------------------------------


def test_two_leaf_nodes_exit_2_with_the_merge_hint(db_alias, migration_set):
    migration_set("integrity_conflict")
    out, _, code = verify(db_alias)
    assert code == 2
    assert (
        "[migrator.E003] Conflicting migrations in 'scenarios': several leaf nodes "
        "(scenarios.0002_left, scenarios.0002_right)."
    ) in out
    assert "To do: Run 'python manage.py makemigrations --merge scenarios'." in out
    _, err, code = run_command("safemigrate", database=db_alias)
    assert code == 2
    assert "0002_left, 0002_right in scenarios" in err
    assert "makemigrations --merge" in err


def test_inconsistent_history_is_reported(db_alias, migration_set):
    migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", "0001", database=db_alias)
    MigrationRecorder(connections[db_alias]).record_applied("scenarios", "0003_third")
    out, _, code = verify(db_alias)
    assert code == 2
    assert (
        "[migrator.E004] scenarios.0003_third is applied before its dependency "
        f"scenarios.0002_second on {db_alias!r}."
    ) in out
    _, err, _ = run_command("check", "--database", db_alias)
    assert "(migrator.E004)" in err


def test_model_changes_without_a_migration_are_errors(db_alias, scenario):
    scenario("basic")  # creates models that the model-less scenarios app does not have
    out, _, code = verify(db_alias)
    assert code == 2
    assert "Model changes without a migration (1):" in out
    assert "[migrator.E005] Models in 'scenarios' have changes that no migration reflects" in out
    assert "Run 'python manage.py makemigrations scenarios'" in out
    # safemigrate, like migrate, does not refuse to run for them.
    assert run_command("safemigrate", "scenarios", database=db_alias, verbosity=0)[2] == 0


# Third-party packages ------------------------------------------------------------------------


def test_third_party_edits_are_warnings_unless_strict(db_alias, migration_set, settings):
    copy = migration_set("integrity_linear", under="lib/site-packages")
    run_command("safemigrate", "scenarios", database=db_alias)
    append(copy / "0001_initial.py")
    out, _, code = verify(db_alias)
    assert code == 0
    assert "[migrator.W002] scenarios.0001_initial (" in out
    assert ") (third-party) changed after it was applied" in out
    out, _, code = run_command("safemigrate", database=db_alias)
    assert code == 0
    assert "[migrator.W002] scenarios.0001_initial (" in out
    assert "(third-party) changed after it was applied" in out
    assert "Reinstall the package that ships 'scenarios' (pip install --force-reinstall" in out
    assert "version control" not in out
    _, err, code = run_command("check", "--database", db_alias)
    assert code == 0
    assert "(migrator.W002)" in err

    settings.MIGRATOR = {**settings.MIGRATOR, "THIRD_PARTY_STRICT": True}
    out, _, code = verify(db_alias)
    assert code == 2
    assert "[migrator.E001] scenarios.0001_initial" in out
    _, err, code = run_command("safemigrate", database=db_alias)
    assert code == 2
    refused = Run.objects.using(db_alias).get(outcome="refused")
    assert (refused.command, refused.error) == ("safemigrate", err.strip())
    history, _, _ = run_command("migrationhistory", "--limit", "1", database=db_alias)
    assert history.splitlines()[0].startswith(f"#{refused.pk} safemigrate ")
    assert "refused" in history.splitlines()[0]


# System checks -------------------------------------------------------------------------------


def test_system_check_reports_ids_for_the_database_asked_about(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    assert run_command("check", "--database", db_alias)[2] == 0
    append(copy / "0001_initial.py")
    (copy / "0003_third.py").unlink()
    _, err, code = run_command("check", "--database", db_alias)
    assert code == 1
    assert "(migrator.E001) scenarios.0001_initial (" in err
    assert "HINT: Restore the file from version control, or accept the edit with " in err
    assert "(migrator.E002) scenarios.0003_third was applied (" in err
    _, err, code = run_command("check")  # no database named: no database is read
    assert code == 0
    assert "migrator." not in err
    # migrator's own commands verify by themselves, with exit 2 rather than check's 1.
    assert run_command("safemigrate", database=db_alias, skip_checks=False)[2] == 2


def test_system_check_warns_once_about_unverified_migrations(db_alias, migration_set):
    migration_set("integrity_linear")
    run_command("migrate", database=db_alias, verbosity=0)
    _, err, code = run_command("check", "--database", db_alias)
    assert code == 0
    assert err.count("(migrator.W001)") == 1
    assert f"HINT: Run 'python manage.py verifymigrations --baseline --database {db_alias}'" in err


def test_checks_are_registered_with_the_database_tag_and_unique_ids():
    registered = django_checks.registry.registry.get_checks()
    assert checks.check_migration_integrity in registered
    assert django_checks.Tags.database in checks.check_migration_integrity.tags
    ids = [*integrity.CHECK_IDS.values(), integrity.THIRD_PARTY_ID]
    assert len(ids) == len(set(ids))
    documented = (Path(__file__).resolve().parent.parent / "docs" / "integrity.md").read_text()
    assert all(f"`{check_id}`" in documented for check_id in ids)
    assert checks.check_migration_integrity(databases=None) == []


# The library as rollback uses it -------------------------------------------------------------


def test_only_limits_verification_to_the_migrations_a_rollback_touches(db_alias, migration_set):
    copy = migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", database=db_alias)
    append(copy / "0001_initial.py")
    connection = connections[db_alias]
    loader = integrity.load(connection)
    later = {("scenarios", "0003_third"), ("scenarios", "0002_second")}
    assert integrity.require_verified(connection, loader, only=later).ok
    with pytest.raises(IntegrityViolation) as raised:
        integrity.require_verified(connection, loader, only={("scenarios", "0001_initial")})
    assert raised.value.exit_code == 2
    assert "scenarios.0001_initial" in str(raised.value)
    report = integrity.verify(connection, loader)
    assert [p.migration for p in report.errors] == ["scenarios.0001_initial"]


def test_unknown_recorded_algorithm_is_unverified_not_changed(db_alias, migration_set):
    migration_set("integrity_linear")
    run_command("safemigrate", "scenarios", "0001", database=db_alias)
    MigrationHash.objects.using(db_alias).filter(app_label="scenarios", name="0001_initial").update(
        checksum="sha512:9:abcdef"
    )
    out, _, code = verify(db_alias)
    assert code == 0
    assert "its hash uses unknown algorithm 'sha512:9'" in out


@pytest.mark.parametrize("request_", [("scenarios", "0001_initial"), ("--last",)])
def test_rollback_past_an_applied_migration_whose_file_is_gone_is_exit_2(
    db_alias, migration_set, request_
):
    """A rollback cannot see what a missing file depends on: unapplying 0002 under an
    applied 0003 would leave the history inconsistent. (--last undoes the safemigrate run
    that applied 0001 and 0002; plain migrate applied 0003 after it.)"""
    copy = migration_set("integrity_linear")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    assert run_command("migrate", "scenarios", database=db_alias)[2] == 0
    (copy / "0003_third.py").unlink()

    _, err, code = run_command("rollback", *request_, "--yes", database=db_alias)

    assert code == 2, err
    assert "scenarios.0003_third was applied (" in err
    assert "its file is missing and no squash on disk replaces it" in err
    assert applied(db_alias, "scenarios") == ["0001_initial", "0002_second", "0003_third"]


@pytest.mark.parametrize("command", ["safemigrate", "rollback"])
def test_an_integrity_refusal_is_refused_in_the_json_as_in_the_audit(
    db_alias, migration_set, command
):
    copy = migration_set("integrity_linear")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    append(copy / "0002_second.py")
    args = ["scenarios", "0001"] if command == "rollback" else []
    out, err, code = run_command(command, *args, "--json", database=db_alias)
    document = json.loads(out)
    refused = Run.objects.using(db_alias).get(outcome="refused")
    assert (code, document["exit_code"], document["outcome"]) == (2, 2, "refused")
    assert (refused.command, refused.error) == (command, document["error"])
