"""Findings: what the analysis found, typed, and the views of a plan's findings commands need.

Everything downstream (the guard, rollback's data-loss report, the audit, the renderers)
reads these dataclasses' attributes; the ``--json`` documents come from ``as_dict()``,
which follows the fields, so a field added here reaches JSON without a second list.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from migrator.risks.catalogue import Severity
from migrator.tablesize import RowCount


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One risk of one operation, with the size of the table it concerns."""

    code: str
    severity: Severity
    message: str
    hint: str
    table: str | None = None
    column: str | None = None
    rows: int | None = None
    rows_exact: bool = False
    rows_lower_bound: bool = False  # more than rows - 1: no statistics to say more
    data_loss: bool = False
    acknowledged: str | None = None
    origin: str = "project"  # project | package: a migration of an installed package
    muted: bool = False  # MIGRATOR["APP_RISKS"] "mute": in JSON, not in human output

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe_loss(self) -> str:
        """'column memo of ledger_entry (12 rows)', for refusals and prompts."""
        if self.table is None:
            return self.message.rstrip(".")
        where = f"column {self.column} of {self.table}" if self.column else f"table {self.table}"
        if self.rows is None:
            return f"{where} (rows that cannot be brought back)"
        rows = RowCount(self.rows, self.rows_exact, self.rows_lower_bound)
        return f"{where} ({rows.describe()})"


@dataclass(frozen=True)
class LabelledFinding:
    """A finding with the migration and operation it belongs to (None: the whole run)."""

    migration: str | None  # "app_label.name"
    operation: str | None  # the operation's description
    finding: Finding

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "operation": self.operation, **self.finding.as_dict()}


class _Operation(Protocol):
    description: str
    findings: list[Finding]


class _Migration(Protocol):
    @property
    def label(self) -> str: ...

    operations: list[Any]  # list[_Operation]; planning.PlannedOperation


def plan_findings(plan: Iterable[_Migration]) -> list[LabelledFinding]:
    """Every finding of a described plan (``planning.PlannedMigration``s), labelled."""
    return [
        LabelledFinding(migration.label, operation.description, finding)
        for migration in plan
        for operation in migration.operations
        for finding in operation.findings
    ]


def data_loss_findings(plan: Iterable[_Migration]) -> list[LabelledFinding]:
    """The findings of a described plan that destroy data (or cannot bring it back)."""
    return [item for item in plan_findings(plan) if item.finding.data_loss]


AUDITED_FIELDS = ("code", "severity", "table", "column", "rows", "acknowledged")


def audit_summary(plan: Iterable[_Migration]) -> list[dict[str, Any]]:
    """What a run's audit record keeps of its plan's findings: all but the plain info ones."""
    return [
        {
            "migration": item.migration,
            **{name: getattr(item.finding, name) for name in AUDITED_FIELDS},
        }
        for item in plan_findings(plan)
        if item.finding.severity != "info" or item.finding.acknowledged
    ]
