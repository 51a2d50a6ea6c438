"""Risk analysis of a plan: what each operation does to data, to locks and to running code.

Linters read migration files offline; this analysis also knows the database: how big each
table is (``tablesize.table_rows``: an exact count for small tables, the planner's estimate
for big PostgreSQL tables, so that it never scans one) and which vendor runs the SQL. It
walks a plan with real project states, as ``MigrationExecutor`` does (``checks.Walker``),
then grades each drafted effect by the size of its table. Every finding has a stable code
from ``catalogue.RISKS``, documented in docs/risks.md.
"""

from collections.abc import Iterator
from typing import Final

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from migrator.risks.catalogue import RISKS, Severity
from migrator.risks.checks import Walker
from migrator.risks.effects import OLD_CODE, Draft
from migrator.risks.findings import Finding
from migrator.risks.policy import app_policies
from migrator.risks.tables import TableRef
from migrator.tablesize import EXACT_COUNT_LIMIT, RowCount, table_rows
from migrator.types import MigrationKey, MigrationPlan

LARGE_TABLE_ROWS: Final = 1_000_000  # a lock or rewrite of a table this big is "danger"


def analyse_plan(
    plan: MigrationPlan,
    connection: BaseDatabaseWrapper,
    loader: MigrationLoader,
    *,
    old_code_runs: bool = True,
) -> dict[MigrationKey, list[list[Finding]]]:
    """Findings for each migration of the plan, one list per operation in the order they run.

    Forward migrations are walked from the applied state, as ``_migrate_all_forwards``
    does; backward ones over the full plan from an empty state, as
    ``_migrate_all_backwards`` does, their operations undone last to first. Without
    ``old_code_runs`` (the after-deploy stage), no finding is about the old code (ML403, ML404).
    """
    forwards = [migration for migration, backwards in plan if not backwards]
    backwards = [migration for migration, backwards in plan if backwards]
    drafts: dict[MigrationKey, list[list[Draft]]] = {}
    if forwards:
        walker = Walker(connection, plan_backwards=False)
        state = _applied_state(loader)
        for migration in forwards:
            drafts[_key(migration)] = walker.migration(migration, state, analyse=True)
    if backwards:
        walker = Walker(connection, plan_backwards=True)
        drafts.update(_walk_backwards(walker, backwards, loader))
    grader = _Grader(connection)
    acknowledged = {_key(m): _acknowledgements(m) for m, _ in plan}
    policies = app_policies(loader, {migration.app_label for migration, _ in plan})
    return {
        key: [
            [
                policies[key[0]].apply(grader.finding(draft, acknowledged[key].get(draft.code)))
                for draft in operation
                if not draft.withdrawn and (old_code_runs or draft.code not in OLD_CODE)
            ]
            for operation in per_operation
        ]
        for key, per_operation in drafts.items()
    }


def _key(migration: Migration) -> MigrationKey:
    return (migration.app_label, migration.name)


def _acknowledgements(migration: Migration) -> dict[str, str]:
    """``Migration.migrator_acknowledge``: ``{"ML101": "why this is fine"}``."""
    raw = getattr(migration, "migrator_acknowledge", None) or {}
    return {str(code): str(reason) for code, reason in dict(raw).items()}


def _full_plan(loader: MigrationLoader) -> Iterator[Migration]:
    """Every migration in the order Django would apply them to an empty database."""
    seen: set[MigrationKey] = set()
    for target in loader.graph.leaf_nodes():
        for key in loader.graph.forwards_plan(target):
            if key not in seen:
                seen.add(key)
                yield loader.graph.nodes[key]


def _applied_state(loader: MigrationLoader) -> ProjectState:
    """The project state of the applied migrations (models only, never rendered)."""
    state = ProjectState(real_apps=loader.unmigrated_apps)
    applied = set(loader.applied_migrations)
    for migration in _full_plan(loader):
        if _key(migration) in applied:
            migration.mutate_state(state, preserve=False)
    return state


def _walk_backwards(
    walker: Walker, backwards: list[Migration], loader: MigrationLoader
) -> dict[MigrationKey, list[list[Draft]]]:
    to_run = {_key(migration): migration for migration in backwards}
    applied = set(loader.applied_migrations)
    state = ProjectState(real_apps=loader.unmigrated_apps)
    drafts = {}
    for node in _full_plan(loader):
        if not to_run:
            break
        key = _key(node)
        if key in to_run:
            per_operation = walker.migration(to_run.pop(key), state, analyse=True)
            drafts[key] = per_operation[::-1]
        elif key in applied:
            walker.migration(node, state, analyse=False)
    return drafts


class _Grader:
    """Row counts per table, each counted at most once per analysis."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.counts: dict[str, RowCount] = {}

    def rows(self, ref: TableRef) -> RowCount:
        if ref.new or ref.gone:
            return RowCount(0, True)
        if ref.live not in self.counts:
            self.counts[ref.live] = table_rows(self.connection, ref.live)
        return self.counts[ref.live]

    def finding(self, draft: Draft, acknowledged: str | None) -> Finding:
        rows = RowCount(None, False)
        if draft.ref is not None and draft.sized:
            rows = self.rows(draft.ref)
        severity, data_loss = draft.severity, draft.data_loss
        has_rows = rows.count != 0
        if draft.scale == "loss":
            data_loss = has_rows
            severity = "danger" if has_rows else "info"
        elif draft.scale == "fails":
            severity = "danger" if has_rows else "info"
        elif draft.scale == "empty":
            severity = "warning" if has_rows else "info"
        elif draft.scale == "size":
            severity = size_severity(rows)
        size = "new table" if draft.ref is not None and draft.ref.new else rows.describe()
        text = draft.text
        if draft.scale in {"loss", "fails", "empty"} and not has_rows:
            head, tail = text.split("{size})", 1)
            text = f"{head}{{size}}){tail.split(':', 1)[0]}: no rows, nothing at stake."
        return Finding(
            code=draft.code,
            severity=severity,
            message=text.replace("{size}", size),
            hint=RISKS[draft.code].hint,
            table=draft.table,
            column=draft.column,
            rows=rows.count,
            rows_exact=rows.exact,
            rows_lower_bound=rows.lower_bound,
            data_loss=data_loss,
            acknowledged=acknowledged,
        )


def size_severity(rows: RowCount) -> Severity:
    """How bad a lock or a rewrite is for a table of this size."""
    if rows.count is None:
        return "warning"
    if rows.count <= EXACT_COUNT_LIMIT and rows.exact:
        return "info"
    return "danger" if rows.count >= LARGE_TABLE_ROWS else "warning"
