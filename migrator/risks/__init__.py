"""Risk analysis: what each operation of a plan does to data, to locks and to running code.

The package's seams: ``catalogue`` (the stable codes and their hints), ``checks`` (one
handler per operation class, walking a plan as ``MigrationExecutor`` does), ``effects``
(what touching a table costs), ``tables`` (which table a step means), ``fields`` and
``postgres`` (field facts and vendor specifics), ``analysis`` (sizes and grading), and
``findings`` (the typed results and the views commands read). Table sizes come from
``migrator.tablesize``, which the batched operations share.
"""

from migrator.risks.analysis import analyse_plan
from migrator.risks.catalogue import RISKS, SEVERITY_RANK, Risk, Severity
from migrator.risks.findings import (
    Finding,
    LabelledFinding,
    audit_summary,
    data_loss_findings,
    plan_findings,
)

__all__ = [
    "RISKS",
    "SEVERITY_RANK",
    "Finding",
    "LabelledFinding",
    "Risk",
    "Severity",
    "analyse_plan",
    "audit_summary",
    "data_loss_findings",
    "plan_findings",
]
