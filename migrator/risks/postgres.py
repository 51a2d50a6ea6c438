"""PostgreSQL specifics: its own operations, and which column type changes rewrite a table."""

import sys

from django.db.migrations.operations.base import Operation


def is_operation(operation: Operation, *names: str) -> bool:
    """Whether an operation is one of django.contrib.postgres.operations' named classes.

    Looked up where the migrations that use it imported it: importing it here would load
    a PostgreSQL driver into every run, SQLite's too, for nothing.
    """
    module = sys.modules.get("django.contrib.postgres.operations")
    return module is not None and isinstance(
        operation, tuple(getattr(module, name) for name in names)
    )


def concurrent(operation: Operation) -> bool:
    return is_operation(operation, "AddIndexConcurrently", "RemoveIndexConcurrently")


def not_valid(operation: Operation) -> bool:
    return is_operation(operation, "AddConstraintNotValid")


def rewrites(old_type: str, new_type: str) -> bool:
    """Whether PostgreSQL rewrites the table to change a column from one type to another."""
    if old_type == new_type:
        return False
    if old_type.startswith("varchar") and new_type == "text":
        return False
    for family in ("varchar", "numeric"):
        old_args, new_args = _type_args(old_type, family), _type_args(new_type, family)
        if old_args and new_args:
            # Longer varchar, or more digits with the same scale: no rewrite since 9.2.
            same_scale = old_args[1:] == new_args[1:]
            return not (same_scale and new_args[0] >= old_args[0])
    return True


def _type_args(db_type: str, family: str) -> tuple[int, ...] | None:
    if not db_type.startswith(f"{family}(") or not db_type.endswith(")"):
        return None
    try:
        return tuple(int(part) for part in db_type[len(family) + 1 : -1].split(","))
    except ValueError:
        return None
