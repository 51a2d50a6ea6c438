"""The catalogue of risk codes: what each finding means and the safe pattern to use instead.

Codes are stable (deploy gates list them in ``MIGRATOR["BLOCKING_RISKS"]``, migrations
acknowledge them); docs/risks.md documents each one, and a test keeps the two in step.
"""

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

Severity: TypeAlias = Literal["info", "warning", "danger"]
SEVERITY_RANK: Final[dict[Severity, int]] = {"info": 0, "warning": 1, "danger": 2}


@dataclass(frozen=True)
class Risk:
    """One kind of finding: its stable code, what it means and the safe pattern."""

    code: str
    title: str
    hint: str


RISKS: Final[dict[str, Risk]] = {
    risk.code: risk
    for risk in [
        Risk(
            "ML101",
            "Column dropped: its data is lost (RemoveField, or undoing AddField).",
            "Back up what the column holds if it matters; drop it one release after the "
            "code stopped using it; acknowledge with migrator_acknowledge.",
        ),
        Risk(
            "ML102",
            "Table dropped: its rows are lost (DeleteModel, or undoing CreateModel).",
            "Back up the table if its rows matter; drop it one release after the code "
            "stopped using it; acknowledge with migrator_acknowledge.",
        ),
        Risk(
            "ML103",
            "Column narrowed (shorter, smaller or less precise type): values that do not "
            "fit are cut or make the migration fail.",
            "Check the longest/largest value first; add a new column, copy in batches, "
            "switch the code, then drop the old one.",
        ),
        Risk(
            "ML104",
            "Undoing a RemoveField: the column comes back empty; its old data is not restored.",
            "Restore the pre-migrate backup (rollback --last --restore) if the data matters.",
        ),
        Risk(
            "ML105",
            "Undoing a DeleteModel: the table comes back empty; its old rows are not restored.",
            "Restore the pre-migrate backup (rollback --last --restore) if the rows matter.",
        ),
        Risk(
            "ML201",
            "Irreversible operation: it cannot be rolled back.",
            "Give RunPython a reverse_code and RunSQL a reverse_sql (RunPython.noop / "
            "RunSQL.noop when nothing needs undoing), or rely on the pre-migrate backup.",
        ),
        Risk(
            "ML301",
            "PostgreSQL: index built without CONCURRENTLY; writes to the table are blocked "
            "while it builds.",
            "Use migrator.operations.AddIndexSafely in a migration with atomic = False "
            "(for a field's index: SeparateDatabaseAndState).",
        ),
        Risk(
            "ML302",
            "PostgreSQL: unique constraint or index built in place; writes are blocked "
            "while the table is scanned.",
            "Use migrator.operations.AddUniqueSafely in a migration with atomic = False "
            "(unique index built concurrently, then ADD CONSTRAINT ... USING INDEX).",
        ),
        Risk(
            "ML303",
            "PostgreSQL: constraint validated in place; the table is locked while every "
            "row is checked.",
            "Use migrator.operations.AddCheckSafely in a migration with atomic = False "
            "(NOT VALID, then VALIDATE, which does not block writes).",
        ),
        Risk(
            "ML304",
            "PostgreSQL: foreign key validated in place; both tables are locked against "
            "writes while every row is checked.",
            "Use migrator.operations.AddForeignKeySafely in a migration with atomic = False "
            "(index built concurrently, constraint NOT VALID, then VALIDATE).",
        ),
        Risk(
            "ML305",
            "PostgreSQL: SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock.",
            "Use migrator.operations.SetNotNullSafely in a migration with atomic = False "
            "(CHECK NOT VALID, VALIDATE, then SET NOT NULL without a scan).",
        ),
        Risk(
            "ML306",
            "PostgreSQL: column type change rewrites the table and its indexes under an "
            "ACCESS EXCLUSIVE lock.",
            "Add a new column, backfill it in batches, switch the code, then drop the old column.",
        ),
        Risk(
            "ML307",
            "NOT NULL column added without any default: the migration fails on a table with rows.",
            "Give the field a db_default, or add it null=True, backfill, then "
            "migrator.operations.SetNotNullSafely.",
        ),
        Risk(
            "ML308",
            "Volatile default: a callable default is computed once for every existing row; "
            "a non-constant db_default rewrites the table on PostgreSQL.",
            "Add the column null=True, backfill it in batches with per-row values, then "
            "migrator.operations.SetNotNullSafely.",
        ),
        Risk(
            "ML401",
            "Column renamed: the code still running during the deploy uses the old name.",
            "Add the new column, write to both, backfill, switch reads, then drop the old "
            "one; or set db_column to keep the column name.",
        ),
        Risk(
            "ML402",
            "Table renamed: the code still running during the deploy uses the old name.",
            "Keep the table name with Meta.db_table, or rename in a maintenance window.",
        ),
        Risk(
            "ML403",
            "Column removed: the code still running during the deploy selects it.",
            "First deploy code without the field (SeparateDatabaseAndState with a "
            "state-only RemoveField), then drop the column in the next release.",
        ),
        Risk(
            "ML404",
            "Table removed: the code still running during the deploy uses it.",
            "First deploy code without the model (state-only DeleteModel), then drop the "
            "table in the next release.",
        ),
        Risk(
            "ML405",
            "NOT NULL column without a database default: inserts by the code still "
            "running during the deploy fail.",
            "Use db_default (Django 5.0+), or add it null=True, backfill, and "
            "migrator.operations.SetNotNullSafely in a later release.",
        ),
        Risk(
            "ML501",
            "RunPython: migrator cannot see what it does, what it locks or how long it takes.",
            "Review it; batch big updates (migrator.operations), keep it idempotent and "
            "give it a reverse_code.",
        ),
        Risk(
            "ML502",
            "RunSQL: migrator cannot see what it does, what it locks or how long it takes.",
            "Review the SQL (CONCURRENTLY, NOT VALID, batches) and give it a reverse_sql.",
        ),
        Risk(
            "ML503",
            "Operation that migrator does not know: not analysed.",
            "Review what it does to the database.",
        ),
    ]
}
