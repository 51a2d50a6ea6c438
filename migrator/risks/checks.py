"""Per-operation checks: which table, column or constraint each operation touches, and how.

``Walker`` walks migrations over a ``ProjectState`` as ``MigrationExecutor`` does, and hands
each operation to the handler of its class, in the direction the plan runs it: undoing an
``AddField`` drops a column, undoing a ``RemoveField`` brings one back empty. Handlers ask
``Tables`` which table is meant and ``Effects`` what it costs.
"""

from typing import Final

from django.db import router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration, operations
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.options import normalize_together

from migrator import safe_operations as safe
from migrator.operations import RunPythonInBatches
from migrator.risks import postgres
from migrator.risks.effects import Draft, Effects
from migrator.risks.fields import column_name, describe_callable, describe_operation
from migrator.risks.tables import Tables
from migrator.types import state_forwards


class Walker:
    """Walks migrations over a project state, drafting findings for each operation."""

    def __init__(self, connection: BaseDatabaseWrapper, *, plan_backwards: bool) -> None:
        self.connection = connection
        self.postgres = connection.vendor == "postgresql"
        self.plan_backwards = plan_backwards
        self.tables = Tables(connection, plan_backwards=plan_backwards)
        self.effects = Effects(self.tables)

    def migration(
        self, migration: Migration, state: ProjectState, *, analyse: bool
    ) -> list[list[Draft]]:
        """Move ``state`` past ``migration``; with ``analyse``, draft each operation's risks."""
        per_operation = []
        for operation in migration.operations:
            drafts = []
            if analyse:
                drafts = self.operation(operation, migration.app_label, state)
                if self.plan_backwards:
                    for draft in drafts:
                        if draft.on_existing_table:
                            draft.ref.on_existing.append(draft)
            else:
                self._follow_tables(operation, migration.app_label, state)
            state_forwards(migration, operation, state)
            per_operation.append(drafts)
        return per_operation

    def operation(self, operation: Operation, app_label: str, state: ProjectState) -> list:
        """Drafts for one operation, given the state just before it (forwards)."""
        drafts: list[Draft] = []
        backwards = self.plan_backwards
        if not operation.reversible:
            text = "cannot be undone" if backwards else "cannot be rolled back"
            severity = "danger" if backwards else "warning"
            what = describe_operation(operation)
            drafts.append(Draft("ML201", f"{what}: {text}.", severity=severity))
        if isinstance(operation, operations.SeparateDatabaseAndState):
            drafts.extend(self._separate(operation, app_label, state))
            return drafts
        handler = self._handler(operation)
        if handler is None:
            drafts.append(
                Draft(
                    "ML503",
                    f"{type(operation).__name__}: not analysed by migrator.",
                    severity="info",
                )
            )
            return drafts
        drafts.extend(handler(operation, app_label, state))
        return drafts

    def _handler(self, operation: Operation):
        handlers = [
            (safe.SetNotNullSafely, _nothing),  # the safe form of ML305; undone: DROP NOT NULL
            (operations.AddField, self._add_field),
            (operations.RemoveField, self._remove_field),
            (operations.AlterField, self._alter_field),
            (operations.RenameField, self._rename_field),
            (operations.CreateModel, self._create_model),
            (operations.DeleteModel, self._delete_model),
            (operations.RenameModel, self._rename_model),
            (operations.AlterModelTable, self._alter_model_table),
            (operations.AddIndex, self._add_index),
            (operations.RemoveIndex, self._remove_index),
            (operations.AddConstraint, self._add_constraint),
            (operations.RemoveConstraint, self._remove_constraint),
            (operations.AlterUniqueTogether, self._alter_together),
            (operations.AlterIndexTogether, self._alter_together),
            (operations.RunPython, self._run_python),
            (RunPythonInBatches, self._run_in_batches),
            (operations.RunSQL, self._run_sql),
        ]
        for operation_class, handler in handlers:
            if isinstance(operation, operation_class):
                return handler
        if _harmless(operation):
            return _nothing
        return None

    def _follow_tables(self, operation: Operation, app_label: str, state: ProjectState) -> None:
        """Track table renames and creations of migrations that are walked, not analysed."""
        if isinstance(operation, operations.RenameModel | operations.AlterModelTable):
            self._rename_model(operation, app_label, state)
        elif isinstance(operation, operations.CreateModel):
            self._create_model(operation, app_label, state)
        elif isinstance(operation, operations.DeleteModel):
            model = self.tables.model(state, app_label, operation.name)
            if model is not None and self.plan_backwards:
                self.tables.recreated(self.tables.table(model))

    # -- one handler per operation class ------------------------------------------------

    def _add_field(self, op: operations.AddField, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None:
            return []
        if self.plan_backwards:
            return self.effects.drop_column(model, op.name, op.field)
        concurrent = isinstance(op, safe.AddForeignKeySafely)
        return self.effects.add_column(model, op.name, op.field, concurrent=concurrent)

    def _remove_field(self, op: operations.RemoveField, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or op.name not in model.fields:
            return []
        field = model.fields[op.name]
        if self.plan_backwards:
            return self.effects.add_column(model, op.name, field, restored=True)
        return self.effects.drop_column(model, op.name, field)

    def _alter_field(self, op: operations.AlterField, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or op.name not in model.fields:
            return []
        old, new = model.fields[op.name], op.field
        if self.plan_backwards:
            old, new = new, old
        return self.effects.alter_column(model, op.name, old, new)

    def _rename_field(self, op: operations.RenameField, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or op.old_name not in model.fields:
            return []
        field = model.fields[op.old_name]
        old, new = column_name(op.old_name, field), column_name(op.new_name, field)
        if self.plan_backwards:
            old, new = new, old
        table = self.tables.table(model)
        if old == new or old is None or table.new:
            return []
        return [
            Draft(
                "ML401",
                f"Renames column {old} of {table.name} ({{size}}) to {new}: the running "
                "code still uses the old name.",
                table,
                old,
            )
        ]

    def _create_model(self, op: operations.CreateModel, app_label: str, state: ProjectState):
        options = op.options
        if not options.get("managed", True) or options.get("proxy", False):
            return []
        if not router.allow_migrate(self.connection.alias, app_label, model_name=op.name_lower):
            return []
        table_name = self.tables.table_name(app_label, op.name, options)
        joins = [  # its many-to-many fields' own tables, made and dropped with it
            self.tables.join_table_name(table_name, name, field)
            for name, field in op.fields
            if field.many_to_many and not field.remote_field.through
        ]
        if self.plan_backwards:
            table = self.tables.ref(table_name)
            table.gone = False
            drafts = self.effects.drop_table(table)
            for join in joins:
                drafts += self.effects.drop_table(self.tables.ref(join))
            return drafts
        for name in [table_name, *joins]:
            self.tables.created(name)
        return []

    def _delete_model(self, op: operations.DeleteModel, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.name)
        if model is None:
            return []
        tables = [self.tables.table(model)] + [
            join
            for name, field in model.fields.items()
            if field.many_to_many and (join := self.tables.join_table(model, name, field))
        ]
        drafts = []
        for table in tables:
            if self.plan_backwards:
                self.tables.recreated(table)
                drafts.append(
                    Draft(
                        "ML105",
                        f"Re-creates table {table.name} empty: its old rows are not restored.",
                        table,
                        sized=False,
                    )
                )
            else:
                drafts += self.effects.drop_table(table)
        return drafts

    def _rename_model(self, op: Operation, app_label: str, state: ProjectState):
        name = op.old_name if isinstance(op, operations.RenameModel) else op.name
        model = self.tables.model(state, app_label, name)
        if model is None:
            return []
        old = self.tables.table_name(app_label, model.name, model.options)
        if isinstance(op, operations.RenameModel):
            new = self.tables.table_name(app_label, op.new_name, model.options)
        else:
            new = self.tables.table_name(app_label, model.name, {"db_table": op.table})
        if old == new:
            return []
        table = self.tables.ref(old)
        self.tables.rename(old, new)
        if table.new:
            return []
        shown_old, shown_new = (new, old) if self.plan_backwards else (old, new)
        return [
            Draft(
                "ML402",
                f"Renames table {shown_old} ({{size}}) to {shown_new}: the running code "
                "still uses the old name.",
                table,
                table=shown_old,
            )
        ]

    def _alter_model_table(self, op: Operation, app_label: str, state: ProjectState):
        return self._rename_model(op, app_label, state)

    def _add_index(self, op: operations.AddIndex, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or self.plan_backwards:
            return []  # undoing it drops the index: cheap
        concurrent = postgres.concurrent(op) or isinstance(op, safe.AddIndexSafely)
        return self.effects.create_index(model, op.index.name, concurrent)

    def _remove_index(self, op: operations.RemoveIndex, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or not self.plan_backwards:
            return []
        return self.effects.create_index(model, op.name, postgres.concurrent(op))

    def _add_constraint(self, op: operations.AddConstraint, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or self.plan_backwards or postgres.not_valid(op):
            return []
        if isinstance(op, safe.AddUniqueSafely | safe.AddCheckSafely):
            return []  # built concurrently / validated without blocking writes
        return self.effects.new_constraint(model, op.constraint)

    def _remove_constraint(
        self, op: operations.RemoveConstraint, app_label: str, state: ProjectState
    ):
        model = self.tables.model(state, app_label, op.model_name)
        if model is None or not self.plan_backwards:
            return []
        constraint = next(
            (c for c in model.options.get("constraints", []) if c.name == op.name), None
        )
        return [] if constraint is None else self.effects.new_constraint(model, constraint)

    def _alter_together(self, op: Operation, app_label: str, state: ProjectState):
        model = self.tables.model(state, app_label, op.name)
        if model is None:
            return []
        old = set(normalize_together(model.options.get(op.option_name) or set()))
        new = set(op.option_value or set())
        if self.plan_backwards:
            old, new = new, old
        table = self.tables.table(model)
        if not self.postgres or table.new or not new - old:
            return []
        unique = op.option_name == "unique_together"
        columns = ", ".join(" + ".join(fields) for fields in sorted(new - old))
        kind = "unique index" if unique else "index"
        return [
            Draft(
                "ML302" if unique else "ML301",
                f"Builds a {kind} on {columns} of {table.name} ({{size}}) without CONCURRENTLY.",
                table,
                scale="size",
            )
        ]

    def _run_python(self, op: operations.RunPython, app_label: str, state: ProjectState):
        code = op.reverse_code if self.plan_backwards else op.code
        if code is None or code is operations.RunPython.noop:
            return []
        if not router.allow_migrate(self.connection.alias, app_label, **op.hints):
            return []
        return [Draft("ML501", f"RunPython {describe_callable(code)}: effect unknown to migrator.")]

    def _run_in_batches(self, op: RunPythonInBatches, app_label: str, state: ProjectState):
        """As RunPython, over the rows of its model's table, sized: each batch is a
        transaction of its own, so it locks little at a time, but touches every row."""
        function = op.reverse_function if self.plan_backwards else op.function
        if function is None or not router.allow_migrate(
            self.connection.alias, app_label, **op.hints
        ):
            return []
        model = self.tables.model(state, app_label, op.model_name)
        if model is None:
            return []
        table = self.tables.table(model)
        return [
            Draft(
                "ML501",
                f"RunPythonInBatches {describe_callable(function)} over {table.name} "
                "({size}): effect unknown to migrator, batch by batch.",
                table,
            )
        ]

    def _run_sql(self, op: operations.RunSQL, app_label: str, state: ProjectState):
        sql = op.reverse_sql if self.plan_backwards else op.sql
        if sql is None or sql == operations.RunSQL.noop or sql == []:
            return []
        if not router.allow_migrate(self.connection.alias, app_label, **op.hints):
            return []
        first = sql if isinstance(sql, str) else str(next(iter(sql), ""))
        first = " ".join(str(first).split())
        if len(first) > 60:
            first = first[:57] + "..."
        return [Draft("ML502", f"RunSQL {first!r}: effect unknown to migrator.")]

    def _separate(self, op: operations.SeparateDatabaseAndState, app_label: str, state):
        database_state = state.clone()
        drafts = []
        for operation in op.database_operations:
            drafts.append(self.operation(operation, app_label, database_state))
            operation.state_forwards(app_label, database_state)
        if self.plan_backwards:
            drafts.reverse()
        return [draft for operation_drafts in drafts for draft in operation_drafts]


def _nothing(operation: Operation, app_label: str, state: ProjectState) -> list[Draft]:
    return []


_HARMLESS: Final = (
    operations.AlterModelOptions,
    operations.AlterModelManagers,
    operations.AlterOrderWithRespectTo,
    operations.RenameIndex,
    operations.AlterModelTableComment,
)


def _harmless(operation: Operation) -> bool:
    return isinstance(operation, _HARMLESS) or postgres.is_operation(
        operation, "CreateExtension", "CollationOperation", "ValidateConstraint"
    )
