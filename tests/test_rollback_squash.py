"""Rollback targets inside a squashed range resolve as Django's migrate resolves them."""

import re

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
