"""Deploy stages: the inference table, marks, the system check, and two-stage deploys."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.postgres import operations as pg_operations
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections, migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState

from migrator import stages
from migrator.conf import get_settings
from migrator.exceptions import InvalidRequest
from migrator.models import Run
from migrator.operations import (
    AddCheckSafely,
    AddForeignKeySafely,
    AddIndexSafely,
    AddUniqueSafely,
    RunPythonInBatches,
    SetNotNullSafely,
)
from migrator.stages import Stage
from tests.scenarios.steps import CHECK_CONDITION
from tests.utils import (
    ROOT,
    applied,
    child_env,
    own_migration_labels,
    run_child,
    run_command,
    start_child,
    wait_for_line,
)

BEFORE, AFTER = Stage.BEFORE_DEPLOY, Stage.AFTER_DEPLOY
DOCS = Path(__file__).resolve().parent.parent / "docs" / "zero-downtime.md"


def widget_state() -> ProjectState:
    """A model as the old code knows it: every kind of field a rule looks at."""
    state = ProjectState()
    state.add_model(
        ModelState(
            "shop",
            "Widget",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
                ("note", models.CharField(max_length=50, null=True)),
                ("code", models.CharField(max_length=10, db_column="code_col")),
            ],
            {
                "indexes": [models.Index(fields=["name"], name="widget_name_idx")],
                "constraints": [models.UniqueConstraint(fields=["name"], name="widget_name_uniq")],
            },
        )
    )
    state.add_model(
        ModelState(
            "shop",
            "Kept",
            [("id", models.AutoField(primary_key=True))],
            {"db_table": "kept_table"},
        )
    )
    return state


def index(name: str = "widget_note_idx") -> models.Index:
    return models.Index(fields=["note"], name=name)


def check(name: str = "widget_code_check") -> models.CheckConstraint:
    return models.CheckConstraint(**{CHECK_CONDITION: models.Q(code__gt="")}, name=name)


class Unknown(Operation):
    def state_forwards(self, app_label, state):
        pass


# (operation, expected stage), one or more per class of INFERENCE.
TABLE = [
    (migrations.CreateModel("Gadget", [("id", models.AutoField(primary_key=True))]), BEFORE),
    (migrations.DeleteModel("Widget"), AFTER),
    (migrations.RenameModel("Widget", "Gizmo"), AFTER),
    (migrations.RenameModel("Kept", "Keeper"), BEFORE),  # Meta.db_table keeps the table
    (migrations.AlterModelTable("Widget", "gizmos"), AFTER),
    (migrations.AlterModelTableComment("Widget", "things"), BEFORE),
    (migrations.AlterUniqueTogether("Widget", {("name", "note")}), BEFORE),
    (migrations.AlterModelOptions("Widget", {"verbose_name": "thing"}), BEFORE),
    (migrations.AlterModelManagers("Widget", []), BEFORE),
    (migrations.AlterOrderWithRespectTo("Widget", "name"), BEFORE),
    (migrations.AlterOrderWithRespectTo("Widget", None), AFTER),
    (migrations.AddField("Widget", "size", models.IntegerField(null=True)), BEFORE),
    (migrations.RemoveField("Widget", "note"), AFTER),
    (migrations.AlterField("Widget", "note", models.CharField(max_length=50)), AFTER),
    (migrations.AlterField("Widget", "name", models.CharField(max_length=20)), AFTER),
    (migrations.AlterField("Widget", "name", models.CharField(max_length=99)), BEFORE),
    (migrations.AlterField("Widget", "name", models.TextField()), BEFORE),
    (
        migrations.AlterField("Widget", "name", models.CharField(max_length=50, db_column="t")),
        AFTER,
    ),
    (migrations.RenameField("Widget", "note", "remark"), AFTER),
    (migrations.RenameField("Widget", "code", "sku"), BEFORE),  # db_column keeps the column
    (migrations.AddIndex("Widget", index()), BEFORE),
    (migrations.RemoveIndex("Widget", "widget_name_idx"), BEFORE),
    (migrations.RenameIndex("Widget", "widget_name_new", old_name="widget_name_idx"), BEFORE),
    (migrations.AddConstraint("Widget", check()), BEFORE),
    (migrations.RemoveConstraint("Widget", "widget_name_uniq"), BEFORE),
    (
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField("Widget", "note")]
        ),
        BEFORE,
    ),
    (
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RemoveField("Widget", "note")]
        ),
        AFTER,
    ),
    (migrations.RunSQL("UPDATE shop_widget SET note = ''"), BEFORE),
    (migrations.RunPython(print), BEFORE),
    (pg_operations.CreateExtension("hstore"), BEFORE),
    (pg_operations.HStoreExtension(), BEFORE),
    (pg_operations.AddIndexConcurrently("Widget", index()), BEFORE),
    (pg_operations.RemoveIndexConcurrently("Widget", "widget_name_idx"), BEFORE),
    (pg_operations.CreateCollation("german", provider="icu", locale="de-u-ks-level2"), BEFORE),
    (pg_operations.RemoveCollation("german", provider="icu", locale="de-u-ks-level2"), BEFORE),
    (pg_operations.AddConstraintNotValid("Widget", check()), BEFORE),
    (pg_operations.ValidateConstraint("Widget", "widget_name_uniq"), BEFORE),
    (RunPythonInBatches("Widget", print), BEFORE),
    (AddIndexSafely("Widget", index()), BEFORE),
    (AddUniqueSafely("Widget", models.UniqueConstraint(fields=["note"], name="w_note_u")), BEFORE),
    (AddCheckSafely("Widget", check()), BEFORE),
    (
        AddForeignKeySafely(
            "Widget", "parent", models.ForeignKey("shop.Widget", models.CASCADE, null=True)
        ),
        BEFORE,
    ),
    (SetNotNullSafely("Widget", "note"), AFTER),
    (Unknown(), BEFORE),
]
if hasattr(migrations, "AlterConstraint"):  # Django 5.2+
    altered = models.UniqueConstraint(
        fields=["name"], name="widget_name_uniq", violation_error_message="taken"
    )
    TABLE.append((migrations.AlterConstraint("Widget", "widget_name_uniq", altered), BEFORE))
if hasattr(migrations, "AlterIndexTogether"):  # kept for old migrations
    TABLE.append((migrations.AlterIndexTogether("Widget", {("name", "note")}), BEFORE))


@pytest.mark.parametrize(
    ("operation", "expected"), TABLE, ids=[type(op).__name__ for op, _ in TABLE]
)
def test_inference_table_operation_by_operation(operation, expected):
    stage, why = stages.infer(operation, "shop", widget_state())
    assert stage is expected, why
    migration = migrations.Migration("0002_step", "shop")
    migration.operations = [operation]
    decision = stages.stage_of(migration, widget_state())
    assert (decision.stage, decision.source) == (expected, "inferred")


def test_every_django_operation_is_in_the_table_and_the_docs():
    names = set(migrations.operations.__all__) | {
        "CreateExtension",
        "AddIndexConcurrently",
        "RemoveIndexConcurrently",
        "CreateCollation",
        "RemoveCollation",
        "AddConstraintNotValid",
        "ValidateConstraint",
    }
    assert names <= set(stages.INFERENCE)
    tested = {cls.__name__ for op, _ in TABLE for cls in type(op).__mro__}
    assert set(stages.INFERENCE) - tested <= {"AlterConstraint", "AlterIndexTogether"} - set(
        migrations.operations.__all__
    )
    documented = set(re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), flags=re.M))
    assert set(stages.INFERENCE) <= documented


def test_a_bad_stage_override_is_a_configuration_error(settings):
    settings.MIGRATOR = {**settings.MIGRATOR, "STAGE_OVERRIDES": {"shop.0002": "later"}}
    expected = r"MIGRATOR\['STAGE_OVERRIDES'\] is .*: the stage of 'shop.0002' must be one of"
    with pytest.raises(ImproperlyConfigured, match=expected):
        get_settings()


def test_a_bad_explicit_stage_is_a_one_line_error():
    migration = migrations.Migration("0002_step", "shop")
    migration.stage = "later"
    with pytest.raises(InvalidRequest) as failed:
        stages.stage_of(migration, widget_state())
    assert str(failed.value) == (
        "Migration shop.0002_step has stage = 'later'; use Stage.BEFORE_DEPLOY or "
        "Stage.AFTER_DEPLOY (from migrator.stages import Stage)."
    )
    assert failed.value.exit_code == 1


# The system check -------------------------------------------------------------------


def test_a_migration_mixing_stages_fails_manage_py_check(db_alias, scenario):
    """With ``db_alias``: from Django 6.1, ``check`` runs model checks against every
    database, and a JSONField's check opens a connection."""
    scenario("stages_mixed")
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", stdout=None)
    message = str(failed.value)
    assert (
        "(migrator.E006) Migration scenarios.0002_add_and_remove mixes deploy stages: " in message
    )
    assert "RemoveField: drops the column the old code reads and writes" in message
    assert "HINT: Split it" in message


def docs_migrations() -> list[str]:
    """The example migrations of docs/zero-downtime.md's "Safe operations", in order."""
    section = DOCS.read_text().split("## Safe operations", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    return [block for block in blocks if "class Migration(" in block]


def test_the_docs_safe_operations_example_passes_manage_py_check(db_alias, migration_set):
    """Copied as documented, the example must not fail the CI check it recommends (E006)."""
    package = migration_set("docs_shop")
    examples = docs_migrations()
    assert examples
    names = [f"{number:04}_docs" for number in range(2, 2 + len(examples))]
    previous = "0001_initial"
    for name, source in zip(names, examples, strict=True):
        source = re.sub(r'\("shop", "\w+"\)', f'("scenarios", "{previous}")', source)
        (package / f"{name}.py").write_text(source)
        previous = name
    out, err, code = run_command("check")
    assert (code, err) == (0, "")
    assert out == "System check identified no issues (0 silenced).\n"


def test_a_misspelt_stage_fails_manage_py_check_in_one_error(db_alias, scenario):
    """As migrate would: an error of the check, not a traceback."""
    scenario("stages_typo")
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", stdout=None)
    assert (
        "(migrator.E006) Migration scenarios.0001_initial has stage = 'after-deploy'; use "
        "Stage.BEFORE_DEPLOY or Stage.AFTER_DEPLOY (from migrator.stages import Stage)."
    ) in str(failed.value)


def test_installed_packages_mixing_stages_do_not_fail_manage_py_check(db_alias):
    """django-oauth-toolkit 0012, 0015 and 0019 mix stages; the project cannot split them,
    and an error would stop runserver. In a child: installing apps in-process leaves their
    checks registered for later tests."""
    done = run_child(db_alias, "check", DJANGO_SETTINGS_MODULE="tests.third_party.settings")
    assert done.returncode == 0, done.stderr
    assert "E006" not in done.stdout + done.stderr


TYPO_MIGRATION = """
from django.db import migrations

from migrator.operations import SetNotNullSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("scenarios", "0001_initial")]
    operations = [{operation}]
"""


@pytest.mark.parametrize(
    ("operation", "name"),
    [
        ('SetNotNullSafely("widget", "nte")', "SetNotNullSafely"),
        ('migrations.RemoveField("widget", "nte")', "RemoveField"),
    ],
    ids=["SetNotNullSafely", "RemoveField"],
)
def test_a_misspelt_field_is_one_line_and_one_json_document(
    db_alias, migration_set, operation, name
):
    """Django's state raises a bare KeyError('nte'): every command names the migration and
    the operation instead, exit 1, and with --json prints exactly one document."""
    package = migration_set("stages_field_typo")
    (package / "0002_typo.py").write_text(TYPO_MIGRATION.format(operation=operation))
    message = (
        f"Migration scenarios.0002_typo: operation 1 ({name}) names 'nte', which the models "
        "before it do not have; fix the name in the migration file."
    )
    for command, *args in [
        ("migrationstatus", "--json", "--check", "--stage", "before-deploy"),
        ("safemigrate", "--json", "--noinput", "--yes"),
        ("safemigrate", "--json", "--noinput", "--yes", "--stage", "before-deploy"),
    ]:
        out, err, code = run_command(command, *args, database=db_alias)
        assert (code, err) == (1, message + "\n"), command
        assert json.loads(out) == {
            "command": command,
            "database": db_alias,
            "error": message,
            "exit_code": 1,
            "outcome": "failed",
        }
    out, err, code = run_command("check")
    assert code == 1
    assert f"?: (migrator.E007) {message}\n" in err


def test_an_override_naming_no_migration_is_a_check_warning(db_alias, scenario, settings):
    """A typo (a prefix, a wrong app) would override nothing: the migration it meant to
    hold back until after the deploy would run before it."""
    scenario("stages_mixed")
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "STAGE_OVERRIDES": {
            "scenarios.0002": "after_deploy",
            "scenarios.0002_add_and_remove": "after_deploy",
        },
    }
    out, err, code = run_command("check")
    assert code == 0
    assert (
        "?: (migrator.W003) MIGRATOR['STAGE_OVERRIDES'] names 'scenarios.0002', which is no "
        "migration on disk: it overrides nothing.\n"
        "\tHINT: Give the full name (app_label.migration_name, as showmigrations lists it), "
        "or remove the entry."
    ) in err
    assert err.count("migrator.W003") == 1


def test_an_override_or_a_mark_settles_a_mixed_migration(db_alias, scenario, settings):
    scenario("stages_mixed")
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "STAGE_OVERRIDES": {"scenarios.0002_add_and_remove": "after_deploy"},
    }
    call_command("check", stdout=None)  # no SystemCheckError


def test_explicit_stage_beats_the_override_which_beats_inference(db_alias, scenario, settings):
    scenario("stages_marked")
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "STAGE_OVERRIDES": {
            "scenarios.0002_drop_name_marked_before": "after_deploy",  # the class says before
            "scenarios.0003_add_size": "after_deploy",  # inferred before
        },
    }
    out, err, code = run_command(
        "safemigrate", "scenarios", "--plan", "--json", stage="before-deploy", database=db_alias
    )
    assert (code, err) == (0, "")
    report = json.loads(out)
    planned = {m["migration"]: (m["stage"], m["stage_source"]) for m in report["plan"]}
    assert planned == {
        **dict.fromkeys(own_migration_labels(), ("before_deploy", "inferred")),
        "scenarios.0001_initial": ("before_deploy", "inferred"),
        "scenarios.0002_drop_name_marked_before": ("before_deploy", "explicit"),
    }
    assert report["held_back"] == [
        {
            "migration": "scenarios.0003_add_size",
            "stage": "after_deploy",
            "reason": "after_deploy (override: MIGRATOR['STAGE_OVERRIDES'])",
        }
    ]


# Two-stage deploys ----------------------------------------------------------------


HELD_BACK = [
    "Held back until after the deploy (2):",
    "  scenarios.0003_remove_account_legacy: after_deploy (inferred: RemoveField: drops the "
    "column the old code reads and writes)",
    "  scenarios.0004_account_email: depends on scenarios.0003_remove_account_legacy, which is "
    "held back",
]


def rows(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scenarios_account")
        return cursor.fetchone()[0]


def start_old_code(alias: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.old_code", "scenarios_account", "name", "legacy"],
        env=child_env(alias),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_before_deploy_applies_what_the_old_code_survives_while_it_runs(db_alias, scenario):
    scenario("deploy_stages")
    out, err, code = run_command("safemigrate", "scenarios", "0001", database=db_alias)
    assert code == 0, err
    old_code = start_old_code(db_alias)
    try:
        wait_for_line(old_code, "READY")
        out, err, code = run_command(
            "safemigrate", "scenarios", stage="before-deploy", database=db_alias
        )
        assert (code, err) == (0, "")
        assert "\n".join(HELD_BACK) in out
        assert applied(db_alias, "scenarios") == ["0001_initial", "0002_account_nickname"]
        seen = rows(db_alias)
        while rows(db_alias) <= seen + 3:  # the old code kept working on the new schema
            assert old_code.poll() is None, old_code.stderr.read()
    finally:
        old_code.send_signal(signal.SIGTERM)
        summary, errors = old_code.communicate(timeout=60)
    assert re.fullmatch(r"rounds=\d+ errors=0", summary.strip().splitlines()[-1]), summary + errors
    out, err, code = run_command(
        "migrationstatus", "--check", "--stage", "before-deploy", database=db_alias
    )
    assert code == 1  # ledger's before_deploy migrations are still pending (another app)
    out, err, code = run_command("safemigrate", stage="after-deploy", database=db_alias)
    assert (code, err) == (0, "")
    assert applied(db_alias, "scenarios")[-2:] == [
        "0003_remove_account_legacy",
        "0004_account_email",
    ]
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 0


def test_status_shows_pending_per_stage_and_gates_on_before_deploy(db_alias, scenario, settings):
    scenario("deploy_stages")
    # The new code needs neither: marked, they wait for the after-deploy stage.
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "STAGE_OVERRIDES": {
            "ledger.0005_normalise_account_names": "after_deploy",
            "scenarios.0004_account_email": "after_deploy",
        },
    }
    # On a new database, contenttypes.0002 (it drops a column) holds auth back: not here.
    assert run_command("safemigrate", "auth", database=db_alias)[2] == 0
    run_command("safemigrate", "--stage", "before-deploy", database=db_alias)
    out, err, code = run_command("migrationstatus", "--json", database=db_alias)
    status = json.loads(out)
    assert status["pending_by_stage"] == {
        "before_deploy": [],
        "after_deploy": [
            "ledger.0004_remove_entry_memo",
            "ledger.0005_normalise_account_names",
            "scenarios.0003_remove_account_legacy",
            "scenarios.0004_account_email",
        ],
    }
    out, err, code = run_command(
        "migrationstatus", "--check", "--stage", "before-deploy", database=db_alias
    )
    assert code == 0, err
    out, err, code = run_command("migrationstatus", "--check", database=db_alias)
    assert code == 1
    out, _, _ = run_command("migrationstatus", database=db_alias)
    assert "    scenarios.0003_remove_account_legacy [after_deploy]\n" in out


def test_a_before_deploy_migration_held_back_by_an_after_deploy_one_fails_the_gate(
    db_alias, scenario
):
    """scenarios.0004 (AddField, before_deploy) depends on 0003 (RemoveField, after_deploy):
    before-deploy holds it back, and the new code would start without its column. Status
    calls it before_deploy, as safemigrate does, and the gate says what is wrong."""
    scenario("deploy_stages")
    assert run_command("safemigrate", "auth", database=db_alias)[2] == 0
    assert run_command("safemigrate", "--stage", "before-deploy", database=db_alias)[2] == 0
    out, err, code = run_command(
        "safemigrate", "--plan", "--json", "--stage", "before-deploy", database=db_alias
    )
    held_back = json.loads(out)["held_back"]
    assert {
        "migration": "scenarios.0004_account_email",
        "stage": "before_deploy",
        "reason": "depends on scenarios.0003_remove_account_legacy, which is held back",
    } in held_back
    out, err, code = run_command("migrationstatus", "--json", database=db_alias)
    status = json.loads(out)
    assert status["held_back"] == held_back
    assert status["pending_by_stage"] == {
        "before_deploy": ["ledger.0005_normalise_account_names", "scenarios.0004_account_email"],
        "after_deploy": ["ledger.0004_remove_entry_memo", "scenarios.0003_remove_account_legacy"],
    }
    out, _, _ = run_command("migrationstatus", database=db_alias)
    assert (
        "    scenarios.0004_account_email [before_deploy, held back: depends on "
        "scenarios.0003_remove_account_legacy, which is held back]\n"
    ) in out
    message = (
        f"Database {db_alias!r} is not ready: before_deploy migrations are held back behind "
        "after_deploy ones, so the new code would start without them: "
        "ledger.0005_normalise_account_names (depends on ledger.0004_remove_entry_memo, which "
        "is held back); scenarios.0004_account_email (depends on "
        "scenarios.0003_remove_account_legacy, which is held back). Make them depend on no "
        "pending after_deploy migration, or, if the new code does not need them, mark them "
        "after_deploy (stage = Stage.AFTER_DEPLOY, or MIGRATOR['STAGE_OVERRIDES'])."
    )
    out, err, code = run_command(
        "migrationstatus", "--check", "--stage", "before-deploy", database=db_alias
    )
    assert (code, err) == (1, message + "\n")
    out, err, code = run_command(
        "migrationstatus", "--check", "--stage", "before-deploy", "--json", database=db_alias
    )
    assert code == 1
    assert (json.loads(out)["error"], json.loads(out)["exit_code"]) == (message, 1)


def paused_in_post_migrate(alias: str, scenario_name: str, stage: str) -> subprocess.Popen:
    """A ``safemigrate --stage`` child whose run is in progress: its migrations applied, it
    waits inside post_migrate for a line on stdin."""
    child = start_child(
        alias,
        *("safemigrate", "--stage", stage, "--noinput", "--yes"),
        MIGRATOR_TEST_SCENARIO=f"tests.scenarios.migration_sets.{scenario_name}",
        PAUSE_AT="post_migrate",
    )
    wait_for_line(child, "PAUSED")
    return child


def finished(child: subprocess.Popen) -> None:
    """Let a paused child go on, and wait for it to succeed."""
    child.stdin.write("\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err


def test_an_after_deploy_run_in_progress_does_not_fail_the_before_deploy_gate(db_alias, scenario):
    """Release N+1's gate while release N's after-deploy stage still runs: nothing the new
    code needs is pending, so the gate passes; a plain --check names the run."""
    scenario("empty")
    assert run_command("safemigrate", database=db_alias)[2] == 0
    scenario("deploy_stages")
    assert run_command("safemigrate", "scenarios", "0002", database=db_alias)[2] == 0
    child = paused_in_post_migrate(db_alias, "deploy_stages", "after-deploy")
    try:
        (run,) = Run.objects.using(db_alias).filter(outcome=Run.Outcome.RUNNING)
        out, err, code = run_command(
            "migrationstatus", "--check", "--stage", "before-deploy", "--json", database=db_alias
        )
        status = json.loads(out)
        assert (code, err, status["pending_by_stage"]["before_deploy"]) == (0, "", [])
        assert [r["id"] for r in status["in_progress"]] == [run.pk]
        out, err, code = run_command("migrationstatus", "--check", database=db_alias)
        assert (code, err) == (
            1,
            f"Database {db_alias!r} is not ready: a run is in progress: safemigrate "
            f"#{run.pk} (stage after-deploy).\n",
        )
    finally:
        finished(child)
    assert run_command("migrationstatus", "--check", database=db_alias)[2] == 0


def test_a_before_deploy_run_in_progress_fails_the_before_deploy_gate(db_alias, scenario):
    """It may still change what the new code needs: not ready until it ends."""
    scenario("empty")
    assert run_command("safemigrate", database=db_alias)[2] == 0
    scenario("basic")
    child = paused_in_post_migrate(db_alias, "basic", "before-deploy")
    try:
        (run,) = Run.objects.using(db_alias).filter(outcome=Run.Outcome.RUNNING)
        out, err, code = run_command(
            "migrationstatus", "--check", "--stage", "before-deploy", database=db_alias
        )
        assert (code, err) == (
            1,
            f"Database {db_alias!r} is not ready: a run is in progress: safemigrate "
            f"#{run.pk} (stage before-deploy).\n",
        )
    finally:
        finished(child)
    out, err, code = run_command(
        "migrationstatus", "--check", "--stage", "before-deploy", database=db_alias
    )
    assert (code, err) == (0, "")


def test_rollback_plan_says_which_undo_steps_wait_for_the_old_code(db_alias, scenario):
    scenario("deploy_stages")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    out, err, code = run_command("rollback", "scenarios", "0001", "--plan", database=db_alias)
    assert code == 0, err
    labels = [line for line in out.splitlines() if line.startswith("  scenarios.")]
    assert labels == [
        "  scenarios.0004_account_email [before_deploy: undo wait until the old code is back]",
        "  scenarios.0003_remove_account_legacy [after_deploy: undo any time]",
        "  scenarios.0002_account_nickname [before_deploy: undo wait until the old code is back]",
    ]
    out, err, code = run_command(
        "rollback", "scenarios", "0001", "--plan", "--json", database=db_alias
    )
    assert [m["waits_for_old_code"] for m in json.loads(out)["plan"]] == [True, False, True]
