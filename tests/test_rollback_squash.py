"""Rollback targets inside a squashed range resolve as Django's migrate resolves them."""

import json
import re

from django.db import connections

from tests.utils import applied, run_command


def planned(out: str) -> list[str]:
    return re.findall(r"^  ?(scenarios\.\w+)", out, flags=re.M)


def test_rollback_into_a_squashed_range_plans_and_runs_as_migrate_does(db_alias, scenario):
    scenario("integrity_squashed")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    migrate_plan, _, code = run_command(
        "migrate", "scenarios", "0001_initial", "--plan", database=db_alias
    )
    assert code == 0
    out, err, code = run_command(
        "rollback", "scenarios", "0001_initial", "--plan", database=db_alias
    )
    assert (code, err) == (0, "")
    assert "Conflicting" not in out
    assert planned(out) == re.findall(r"^(scenarios\.\w+)", migrate_plan, flags=re.M)
    assert planned(out) == ["scenarios.0002_second"]

    out, err, code = run_command(
        "rollback", "scenarios", "0001_initial", "--yes", database=db_alias
    )
    assert (code, err) == (0, ""), out
    after_rollback = applied(db_alias, "scenarios")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert run_command("migrate", "scenarios", "0001_initial", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios") == after_rollback
    assert "0002_second" not in after_rollback


def tables(alias: str) -> list[str]:
    return sorted(
        name for name in connections[alias].introspection.table_names() if "integrity_" in name
    )


def test_rollback_last_refuses_a_run_whose_migration_completed_a_squash(db_alias, scenario):
    """The run applied 0002 alone, which completed the squash of 0001 and 0002: undoing it
    means unapplying the squash, 0001 included, which the run did not apply."""
    scenario("integrity_linear")
    assert run_command("safemigrate", "scenarios", "0001_initial", database=db_alias)[2] == 0
    scenario("integrity_squashed")
    assert run_command("safemigrate", "scenarios", database=db_alias)[2] == 0
    assert applied(db_alias, "scenarios")[:2] == ["0001_initial", "0002_second"]

    out, err, code = run_command("rollback", "--last", "--yes", "--json", database=db_alias)

    assert code == 7, err
    [problem] = json.loads(out)["problems"]
    assert problem["code"] == "squashed"
    assert problem["message"] == (
        "Run #2 applied scenarios.0002_second, which squash scenarios.0001_squashed_0002_second "
        "now stands for together with scenarios.0001_initial, applied before it; roll back to "
        "an explicit target (rollback <app_label> <migration_name>), or restore the run's "
        "backup (rollback --last --restore)."
    )
    assert tables(db_alias) == ["integrity_first", "integrity_second"]


def test_rollback_last_unapplies_the_squash_that_now_stands_for_all_the_run_applied(
    db_alias, scenario
):
    """The run applied 0001 and 0002; a squash of the two came later."""
    scenario("integrity_linear")
    assert run_command("safemigrate", "scenarios", "0002_second", database=db_alias)[2] == 0
    scenario("integrity_squashed")

    out, err, code = run_command("rollback", "--last", "--yes", database=db_alias)

    assert (code, err) == (0, ""), out
    assert "scenarios.0001_squashed_0002_second" in out
    assert applied(db_alias, "scenarios") == []
    assert tables(db_alias) == []
