"""migrator on a project of popular third-party apps (tests/third_party), as a team adopts it.

Their migrations live under site-packages: code the team does not own, run on SQLite and
PostgreSQL next to the project's own.
"""

import json
import re

from django.db import connections
from django.db.migrations.loader import MigrationLoader

from tests.third_party import THIRD_PARTY_APPS
from tests.utils import applied, own_migrations, run_child, run_command


def test_safemigrate_applies_the_third_party_project_as_migrate_does(db_alias, third_party_apps):
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    on_disk = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    for app in third_party_apps:
        expected = sorted(name for label, name in on_disk if label == app)
        assert sorted(applied(db_alias, app)) == expected, app
    assert run_command("migrate", "--check", database=db_alias)[2] == 0
    assert connections[db_alias].introspection.table_names().count("taggit_tag") == 1


PACKAGE_APPS = {"auth", "contenttypes", *THIRD_PARTY_APPS}


def risk_lines(out: str) -> list[str]:
    """The finding lines (``ML501 info: ...``) of a human plan or risk report."""
    return [line.strip() for line in out.splitlines() if re.match(r"      ML\d{3} ", line)]


def listed_migrations(out: str) -> set[str]:
    """Migrations a plan lists (with their deploy stage: ``  ledger.0005_x [before_deploy]``)."""
    found = (re.fullmatch(r"  (\w+\.\d{4}\w*)( \[\w+\])?", line) for line in out.splitlines())
    return {match.group(1) for match in found if match}


def test_installed_packages_findings_are_information_on_a_fresh_database(
    db_alias, third_party_apps
):
    out, err, code = run_command("safemigrate", "--plan", verbosity=2, database=db_alias)
    assert (code, err) == (0, "")
    document = json.loads(run_command("safemigrate", "--plan", "--json", database=db_alias)[0])
    package_findings = [
        (migration["migration"], finding)
        for migration in document["plan"]
        for operation in migration["operations"]
        for finding in operation["findings"]
        if migration["migration"].split(".")[0] in PACKAGE_APPS
    ]
    assert len(package_findings) > 5  # ML501 of auth, axes, oauth2_provider; ML101 ...
    for label, finding in package_findings:
        assert (finding["severity"], finding["origin"]) == ("info", "package"), label
        assert "installed package" in finding["hint"], label
        assert "migrator_acknowledge" not in finding["hint"], label
    # --plan -v 2 lists every finding, the hint once per app and code.
    assert len(risk_lines(out)) == sum(
        len(o["findings"]) for m in document["plan"] for o in m["operations"]
    )
    hints = [line for line in out.splitlines() if line.startswith("  ML501 in oauth2_provider")]
    assert hints == [
        "  ML501 in oauth2_provider (4 findings): oauth2_provider is an installed package: its "
        "migrations are not yours to edit; check its release notes, or set "
        "MIGRATOR['APP_RISKS'] = {'oauth2_provider': 'warn'} to see its findings as warnings "
        "('mute' hides them)."
    ]
    # The run itself: only the project's own warning (ledger.0005 is irreversible).
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    assert out.startswith("Risks in this plan: 1 to review (warning or danger), ")
    assert listed_migrations(out) == {"ledger.0005_normalise_account_names"}
    assert risk_lines(out) == ["ML201 warning: Raw Python operation: cannot be rolled back."]


FUNCTIONS = ["forwards_func", "forwards_func", "forwards_func", "forwards_set_dcr_source"]


def test_app_risks_raises_or_mutes_an_installed_package(db_alias, third_party_apps, settings):
    # An upgrade of the package: its first migrations are applied, the new ones pending.
    assert run_command("safemigrate", "oauth2_provider", "0005", database=db_alias)[2] == 0
    pending = [
        "oauth2_provider.0006_alter_application_client_secret",
        "oauth2_provider.0012_add_token_checksum",
        "oauth2_provider.0015_refreshtoken_token_checksum",
        "oauth2_provider.0019_application_registration_source",
    ]
    out, err, code = run_command("safemigrate", "oauth2_provider", "--plan", database=db_alias)
    assert (code, err) == (0, "")
    assert {line.split(":")[0].split()[1] for line in risk_lines(out)} == {"info"}
    assert [line for line in risk_lines(out) if line.startswith("ML501")] == [
        f"ML501 info: RunPython {function}: effect unknown to migrator." for function in FUNCTIONS
    ]

    settings.MIGRATOR = {**settings.MIGRATOR, "APP_RISKS": {"oauth2_provider": "warn"}}
    out, err, code = run_command("safemigrate", "oauth2_provider", "--plan", database=db_alias)
    assert [line for line in risk_lines(out) if line.startswith("ML501")] == [
        f"ML501 warning: RunPython {function}: effect unknown to migrator."
        for function in FUNCTIONS
    ]
    assert listed_migrations(out) >= set(pending)

    settings.MIGRATOR = {**settings.MIGRATOR, "APP_RISKS": {"oauth2_provider": "mute"}}
    out, err, code = run_command("safemigrate", "oauth2_provider", "--plan", database=db_alias)
    assert risk_lines(out) == []
    document = json.loads(
        run_command("safemigrate", "oauth2_provider", "--plan", "--json", database=db_alias)[0]
    )
    findings = [
        (m["migration"], f["code"], f["muted"])
        for m in document["plan"]
        for o in m["operations"]
        for f in o["findings"]
    ]
    assert {muted for _, _, muted in findings} == {True}
    assert [label for label, code, _ in findings if code == "ML501"] == pending


def test_a_blocking_code_in_an_installed_package_never_asks_to_edit_it(
    db_alias, third_party_apps, settings
):
    settings.MIGRATOR = {**settings.MIGRATOR, "BLOCKING_RISKS": ["ML501"]}
    out, err, code = run_command("safemigrate", "axes", database=db_alias)
    assert code == 3
    assert "ML501 in axes.0007_alter_accessattempt_unique_together" in err
    assert "migrator_acknowledge" not in err
    assert "axes: installed package(s), not yours to edit; once reviewed, set " in err
    assert "MIGRATOR['APP_RISKS'] = {'axes': 'mute'}; nothing was changed." in err
    assert "axes_accessattempt" not in connections[db_alias].introspection.table_names()


def test_plan_run_refusal_and_status_count_the_same_migrations(
    db_alias, third_party_apps, settings
):
    document = json.loads(run_command("safemigrate", "--plan", "--json", database=db_alias)[0])
    planned = len(document["plan"])
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
    _, err, code = run_command("safemigrate", "--noinput", database=db_alias)
    assert code == 3
    assert err.startswith(f"Apply {planned} migration(s) to {db_alias!r} in production?")
    settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "development"}
    out, err, code = run_command("safemigrate", database=db_alias)
    assert (code, err) == (0, "")
    assert out.count("  Applying ") == planned
    own = own_migrations()
    assert f"Applied {planned} migration(s), {own} of them migrator's own, to {db_alias!r}" in out
    status, _, _ = run_command("migrationstatus", database=db_alias)
    assert f"  applied: {planned} migration(s) (a squash counts once, as in the plan)" in status
    assert "  pending: none" in status


def test_model_changes_in_an_installed_package_are_a_warning_not_a_failure(db_alias):
    """The project cannot write a package's migrations: testmigrations and verifymigrations
    warn, and never advise makemigrations into site-packages; THIRD_PARTY_STRICT fails."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.third_party.settings",
        "MIGRATOR_TEST_BIG_TAGGIT_IDS": "1",
    }
    done = run_child(db_alias, "testmigrations", "taggit", "--noinput", "--json", **env)
    report = json.loads(done.stdout)
    assert (done.returncode, report["model_changes"]) == (0, []), done.stderr
    assert report["package_model_changes"][0].startswith("taggit: Alter field id on ")
    assert run_child(db_alias, "safemigrate", "taggit", **env).returncode == 0
    done = run_child(db_alias, "verifymigrations", **env)
    assert done.returncode == 0, done.stderr
    assert (
        "[migrator.W002] Models in 'taggit' have changes that no migration reflects" in done.stdout
    )
    assert "upgrade or reinstall the package that ships 'taggit'" in done.stdout
    assert "makemigrations taggit" not in done.stdout
    strict = {"MIGRATOR_TEST_SETTINGS": json.dumps({"THIRD_PARTY_STRICT": True})}
    done = run_child(db_alias, "testmigrations", "taggit", "--noinput", **env, **strict)
    assert done.returncode == 2
    assert "  Model changes without a migration:\n    taggit: Alter field id on " in done.stdout
