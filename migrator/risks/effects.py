"""What an operation does to a table, drafted as findings before the table sizes are known.

The checks (``migrator.risks.checks``) work out which table, column or constraint an
operation touches, in the direction it runs; the effects here say what that costs: data
lost, a migration that fails on rows, a lock held while an index builds. The analysis then
reads the sizes and grades each draft (``scale``).
"""

from dataclasses import dataclass
from typing import Any, Final

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.state import ModelState
from django.db.models import NOT_PROVIDED, Field, UniqueConstraint

from migrator.compat import REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE
from migrator.risks import postgres
from migrator.risks.catalogue import Severity
from migrator.risks.fields import (
    column_name,
    constant,
    db_default,
    db_type,
    describe_callable,
    has_value_for_rows,
    is_fk,
    narrowing,
    remote,
)
from migrator.risks.tables import TableRef, Tables

# Lock and running-code findings: drafted only for a table that is not new to this plan
# (``TableRef.new``); docs/risks.md says so.
ON_EXISTING_TABLES: Final = frozenset(
    {"ML301", "ML302", "ML303", "ML304", "ML305", "ML306", "ML308"}
    | {"ML401", "ML402", "ML403", "ML404", "ML405"}
)
# About the old code that runs during the deploy: false once none runs (the after-deploy
# stage), where the running code is the new code, without the column or table.
OLD_CODE: Final = frozenset({"ML403", "ML404"})


@dataclass
class Draft:
    """A finding before the table sizes are known."""

    code: str
    text: str  # the message, with "{size}" where the table's size goes
    ref: TableRef | None = None
    column: str | None = None
    # fixed; loss: data lost if rows; fails: fails if rows; empty: comes back empty; size: locks
    scale: str = "fixed"
    severity: Severity = "warning"
    data_loss: bool = False
    sized: bool = True  # False: the row count is unknowable (a table that comes back)
    table: str | None = None  # default: its name where the operation is, as the text says
    withdrawn: bool = False  # backwards: the table is re-created empty before this undo

    @property
    def on_existing_table(self) -> bool:
        """A lock or running-code finding: never drafted for a table the plan creates."""
        return self.ref is not None and self.code in ON_EXISTING_TABLES

    def __post_init__(self) -> None:
        if self.table is None and self.ref is not None:
            self.table = self.ref.name


class Effects:
    """Drafts for the effects of operations on the tables of one walk."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.connection: BaseDatabaseWrapper = tables.connection
        self.postgres = tables.connection.vendor == "postgresql"
        self.plan_backwards = tables.plan_backwards

    def drop_column(self, model: ModelState, name: str, field: Field) -> list[Draft]:
        if field.many_to_many:
            join = self.tables.join_table(model, name, field)
            return [] if join is None else self.drop_table(join)
        table, column = self.tables.table(model), column_name(name, field)
        if column in table.added:  # forwards: added earlier in this plan
            table.added.discard(column)
            return [_dropped_again(table, column)]
        drafts = [
            Draft(
                "ML101",
                f"Drops column {column} of {table.name} ({{size}}): its data is lost.",
                table,
                column,
                scale="loss",
            )
        ]
        if self.plan_backwards:
            table.dropping.setdefault(column, []).append(drafts[0])
        if not table.new:
            drafts.append(
                Draft(
                    "ML403",
                    f"Removes column {column} of {table.name} ({{size}}) that the running "
                    "code still selects.",
                    table,
                    column,
                )
            )
        return drafts

    def drop_table(self, table: TableRef) -> list[Draft]:
        drafts = [
            Draft(
                "ML102",
                f"Drops table {table.name} ({{size}}): its rows are lost.",
                table,
                scale="loss",
            )
        ]
        if not table.new:
            drafts.append(
                Draft(
                    "ML404",
                    f"Removes table {table.name} ({{size}}) that the running code still uses.",
                    table,
                )
            )
        return drafts

    def add_column(
        self,
        model: ModelState,
        name: str,
        field: Field,
        *,
        restored: bool = False,
        concurrent: bool = False,
    ) -> list[Draft]:
        """``concurrent``: its indexes (unique too) are built concurrently and its foreign
        key NOT VALID."""
        if field.many_to_many:
            join = self.tables.join_table(model, name, field)
            if join is not None and not self.plan_backwards:
                self.tables.created(join.name)
            return []
        table, column = self.tables.table(model), column_name(name, field)
        drafts = []
        if self.plan_backwards:  # undone before the drops walked so far: they drop this one
            for draft in table.dropping.pop(column, []):
                vars(draft).update(vars(_dropped_again(table, column)))
        else:
            table.added.add(column)
        if restored:
            drafts.append(
                Draft(
                    "ML104",
                    f"Re-creates column {column} of {table.name} ({{size}}) empty: its old "
                    "data is not restored.",
                    table,
                    column,
                    scale="empty",
                )
            )
        if not has_value_for_rows(field):
            drafts.append(
                Draft(
                    "ML307",
                    f"Adds NOT NULL column {column} to {table.name} ({{size}}) without a "
                    "default: it fails if the table has rows.",
                    table,
                    column,
                    scale="fails",
                )
            )
        if table.new:
            return drafts
        if not field.null and db_default(field) is NOT_PROVIDED:
            drafts.append(
                Draft(
                    "ML405",
                    f"Adds NOT NULL column {column} to {table.name} ({{size}}) without a "
                    "database default: inserts by the running code fail.",
                    table,
                    column,
                )
            )
        drafts.extend(self._volatile_default(table, column, field))
        if self.postgres:
            built = self._column_indexes(table, column, field, None)
            safe_form = {"ML301", "ML302", "ML304"}  # indexes concurrently, foreign key NOT VALID
            drafts.extend(d for d in built if not (concurrent and d.code in safe_form))
        return drafts

    def _volatile_default(self, table: TableRef, column: str, field: Field) -> list[Draft]:
        default = db_default(field)
        if field.has_default() and callable(field.default):
            unique = " and the unique constraint fails" if field.unique else ""
            return [
                Draft(
                    "ML308",
                    f"Default {describe_callable(field.default)} of column {column} of "
                    f"{table.name} ({{size}}) is computed once: every existing row gets the "
                    f"same value{unique}.",
                    table,
                    column,
                    scale="fails" if field.unique else "size",
                )
            ]
        if self.postgres and default is not NOT_PROVIDED and not constant(default):
            return [
                Draft(
                    "ML308",
                    f"db_default {default!r} of column {column} of {table.name} "
                    "({size}) may be volatile: PostgreSQL then rewrites the table.",
                    table,
                    column,
                    scale="size",
                )
            ]
        return []

    def _column_indexes(
        self, table: TableRef, column: str, new: Field, old: Field | None
    ) -> list[Draft]:
        """Indexes and constraints that adding ``new`` (or turning ``old`` into it) builds."""
        drafts = []
        was_unique = old is not None and old.unique
        was_indexed = old is not None and (old.db_index or old.unique)
        if new.unique and not new.primary_key and not was_unique:
            drafts.append(
                Draft(
                    "ML302",
                    f"Builds a unique index on {column} of {table.name} ({{size}}) in place.",
                    table,
                    column,
                    scale="size",
                )
            )
        elif new.db_index and not new.unique and not was_indexed:
            drafts.append(
                Draft(
                    "ML301",
                    f"Builds an index on {column} of {table.name} ({{size}}) without CONCURRENTLY.",
                    table,
                    column,
                    scale="size",
                )
            )
        elif (
            was_indexed and (new.db_index or new.unique) and self._rebuilds_pattern_index(old, new)
        ):
            drafts.append(
                Draft(
                    "ML301",
                    f"Builds the pattern-ops index of {column} of {table.name} ({{size}}) "
                    "again, for its new type, without CONCURRENTLY.",
                    table,
                    column,
                    scale="size",
                )
            )
        had_constraint = old is not None and is_fk(old) and old.db_constraint
        if is_fk(new) and new.db_constraint and not had_constraint:
            drafts.append(
                Draft(
                    "ML304",
                    f"Adds a foreign key on {column} of {table.name} ({{size}}) to "
                    f"{remote(new)}, validated in place.",
                    table,
                    column,
                    scale="size",
                )
            )
        return drafts

    def _rebuilds_pattern_index(self, old: Field, new: Field) -> bool:
        """PostgreSQL's editor makes a ``varchar_pattern_ops``/``text_pattern_ops`` index
        (for LIKE) beside an indexed character column, and builds it again when the column
        moves between varchar, text and citext (compat.REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE)."""
        if not REBUILDS_PATTERN_INDEX_ON_TYPE_CHANGE:
            return False
        old_type, new_type = db_type(old, self.connection), db_type(new, self.connection)
        if not old_type or not new_type or "[" in new_type:
            return False
        families = ("varchar", "text", "citext")
        old_family = next((f for f in families if old_type.startswith(f)), None)
        return (
            old_family is not None
            and not new_type.startswith(old_family)
            and (new_type.startswith(("varchar", "text")))
        )

    def alter_column(self, model: ModelState, name: str, old: Field, new: Field):
        if old.many_to_many or new.many_to_many:
            return []
        table, column = self.tables.table(model), column_name(name, new)
        drafts = []
        narrowed = narrowing(old, new)
        if narrowed:
            drafts.append(
                Draft(
                    "ML103",
                    f"Narrows column {column} of {table.name} ({{size}}), {narrowed}: values "
                    "that do not fit are cut or fail.",
                    table,
                    column,
                    scale="loss",
                )
            )
        if not self.postgres or table.new:
            return drafts
        if old.null and not new.null and not new.primary_key:
            drafts.append(
                Draft(
                    "ML305",
                    f"Sets column {column} of {table.name} ({{size}}) NOT NULL: a full "
                    "scan under an ACCESS EXCLUSIVE lock.",
                    table,
                    column,
                    scale="size",
                )
            )
        old_type, new_type = db_type(old, self.connection), db_type(new, self.connection)
        relational = old.is_relation or new.is_relation
        if not relational and old_type and new_type and postgres.rewrites(old_type, new_type):
            drafts.append(
                Draft(
                    "ML306",
                    f"Changes column {column} of {table.name} ({{size}}) from {old_type} to "
                    f"{new_type}: the table is rewritten.",
                    table,
                    column,
                    scale="size",
                )
            )
        drafts.extend(self._column_indexes(table, column, new, old))
        return drafts

    def create_index(self, model: ModelState, index_name: str, concurrent: bool):
        table = self.tables.table(model)
        if not self.postgres or concurrent or table.new:
            return []
        return [
            Draft(
                "ML301",
                f"Builds index {index_name} on {table.name} ({{size}}) without CONCURRENTLY.",
                table,
                scale="size",
            )
        ]

    def new_constraint(self, model: ModelState, constraint: Any) -> list[Draft]:
        table = self.tables.table(model)
        if not self.postgres or table.new:
            return []
        if isinstance(constraint, UniqueConstraint):
            code, what = "ML302", f"Builds unique constraint {constraint.name}"
        else:
            code, what = "ML303", f"Validates constraint {constraint.name}"
        return [Draft(code, f"{what} on {table.name} ({{size}}) in place.", table, scale="size")]


def _dropped_again(table: TableRef, column: str) -> Draft:
    """A column dropped after this plan added it (or, backwards, re-created it empty)."""
    return Draft(
        "ML101",
        f"Drops column {column} of {table.name} that this plan creates first: it holds no "
        "data that exists now.",
        table,
        column,
        severity="info",
        sized=False,
    )
