"""Tables as a walk over a plan sees them: their names now, and whether they exist yet.

A plan may create a table and then alter it, rename a table the database knows under its
old name, or (backwards) bring back a table that is gone: the checks ask this tracker
which table an operation touches, so sizes are read from the right name, and a new table
(empty, unknown to the running code) is not reported as if it held data.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import truncate_name
from django.db.migrations.state import ModelState, ProjectState
from django.db.models import Field

from migrator.risks.fields import swapped


@dataclass(eq=False)
class TableRef:
    """A table as the plan sees it: its name at this point of the walk, and ``live``, its
    name in the database as it is now (where its rows are counted)."""

    name: str
    new: bool = False  # created earlier in this plan: empty, unknown to the running code
    gone: bool = False  # not in the database now: a rollback re-creates it empty
    # Columns this plan adds before it drops them again: they hold no data that exists now.
    added: set[str] = field(default_factory=set)
    # Backwards, walked in the order the migrations were applied: the drafts of the columns
    # the rollback drops, which a migration walked later (undone earlier) may re-create empty.
    dropping: dict[str, list[Any]] = field(default_factory=dict)
    # Backwards: the lock and running-code drafts on this table so far, withdrawn if a
    # migration walked later (undone earlier) re-creates the table empty.
    on_existing: list[Any] = field(default_factory=list)
    live: str = ""

    def __post_init__(self) -> None:
        self.live = self.live or self.name


class Tables:
    """The tables of one walk, by the name the plan uses for them."""

    def __init__(self, connection: BaseDatabaseWrapper, *, plan_backwards: bool) -> None:
        self.connection = connection
        self.plan_backwards = plan_backwards
        self.refs: dict[str, TableRef] = {}

    def ref(self, table: str) -> TableRef:
        return self.refs.setdefault(table, TableRef(table))

    def created(self, table: str) -> TableRef:
        """A table this plan creates (forwards): empty and new to the running code."""
        self.refs[table] = ref = TableRef(table, new=True)
        return ref

    def recreated(self, ref: TableRef) -> None:
        """Backwards: undoing a DeleteModel brings the table back empty, new to the running
        code, before the undos walked so far: their lock and running-code drafts are moot."""
        ref.gone = True
        for draft in ref.on_existing:
            draft.withdrawn = True
        ref.on_existing.clear()

    def model(self, state: ProjectState, app_label: str, name: str) -> ModelState | None:
        """The model a migration operation names, if it has a table this database holds."""
        model = state.models.get((app_label, name.lower()))
        if model is None:
            return None
        options = model.options
        if not options.get("managed", True) or options.get("proxy", False):
            return None
        if swapped(model):
            return None
        if not router.allow_migrate(self.connection.alias, app_label, model_name=model.name_lower):
            return None
        return model

    def table_name(self, app_label: str, name: str, options: dict[str, Any]) -> str:
        return options.get("db_table") or truncate_name(
            f"{app_label}_{name.lower()}", self.connection.ops.max_name_length()
        )

    def join_table_name(self, table: str, name: str, field: Field) -> str:
        return field.db_table or truncate_name(
            f"{table}_{name}", self.connection.ops.max_name_length()
        )

    def table(self, model: ModelState) -> TableRef:
        return self.ref(self.table_name(model.app_label, model.name, model.options))

    def join_table(self, model: ModelState, name: str, field: Field) -> TableRef | None:
        if field.remote_field.through:  # an explicit through model keeps its own table
            return None
        table = self.table_name(model.app_label, model.name, model.options)
        return self.ref(self.join_table_name(table, name, field))

    def rename(self, old: str, new: str) -> None:
        """A table renamed in the walk; in a backward plan, the new name is the live one."""
        ref = self.refs.pop(old, None) or TableRef(old)
        ref.name = new
        if self.plan_backwards:
            ref.live = new
        self.refs[new] = ref
