"""Facts about model fields that the checks need: column names, defaults, narrowing."""

from typing import Any, Final

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState
from django.db.models import NOT_PROVIDED, Field, Value


def is_fk(field: Field) -> bool:
    return bool(getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False))


def column_name(name: str, field: Field) -> str | None:
    if field.many_to_many:
        return None
    return field.db_column or (f"{name}_id" if is_fk(field) else name)


def remote(field: Field) -> str:
    model = field.remote_field.model
    if isinstance(model, str):
        return model.lower()
    return model._meta.label_lower


def db_default(field: Field) -> Any:
    return getattr(field, "db_default", NOT_PROVIDED)  # Django 5.0+


def has_value_for_rows(field: Field) -> bool:
    """Whether adding the column gives existing rows a value (Django's effective default)."""
    return (
        field.null
        or field.has_default()
        or db_default(field) is not NOT_PROVIDED
        or getattr(field, "generated", False)
        or (field.blank and field.empty_strings_allowed)
        or getattr(field, "auto_now", False)
        or getattr(field, "auto_now_add", False)
    )


INTEGER_RANK: Final = {
    "SmallIntegerField": 1,
    "PositiveSmallIntegerField": 1,
    "SmallAutoField": 1,
    "IntegerField": 2,
    "PositiveIntegerField": 2,
    "AutoField": 2,
    "BigIntegerField": 3,
    "PositiveBigIntegerField": 3,
    "BigAutoField": 3,
}


def narrowing(old: Field, new: Field) -> str | None:
    """Why changing ``old`` into ``new`` can lose values, or None when it cannot."""
    old_type, new_type = old.get_internal_type(), new.get_internal_type()
    old_length, new_length = getattr(old, "max_length", None), getattr(new, "max_length", None)
    if new_length is not None and old_type not in INTEGER_RANK:
        if old_length is not None and new_length < old_length:
            return f"max_length {old_length} -> {new_length}"
        if old_length is None and old_type in {"TextField", "JSONField"}:
            return f"{old_type} -> max_length {new_length}"
    ranks = INTEGER_RANK.get(old_type, 0), INTEGER_RANK.get(new_type, 0)
    if 0 < ranks[1] < ranks[0]:
        return f"{old_type} -> {new_type}"
    if old_type in {"FloatField", "DecimalField"} and new_type in INTEGER_RANK:
        return f"{old_type} -> {new_type}: fractions are lost"
    if old_type == new_type == "DecimalField" and (
        new.max_digits < old.max_digits or new.decimal_places < old.decimal_places
    ):
        return (
            f"decimal({old.max_digits},{old.decimal_places}) -> "
            f"decimal({new.max_digits},{new.decimal_places})"
        )
    if old_type == "DateTimeField" and new_type == "DateField":
        return "DateTimeField -> DateField: the time of day is lost"
    return None


def db_type(field: Field, connection: BaseDatabaseWrapper) -> str | None:
    try:
        return field.db_type(connection)
    except Exception:  # noqa: BLE001  (a custom field may need a model to answer)
        return None


def describe_operation(operation: Operation) -> str:
    try:
        return operation.describe()
    except Exception:  # noqa: BLE001  (a third-party operation's describe() may be broken)
        return type(operation).__name__


def describe_callable(function: Any) -> str:
    return getattr(function, "__qualname__", None) or getattr(function, "__name__", "code")


def constant(expression: Any) -> bool:
    if isinstance(expression, Value) or not hasattr(expression, "resolve_expression"):
        return True
    from django.db.models.functions import Now

    return isinstance(expression, Now)  # now() is STABLE: no rewrite


def swapped(model: ModelState) -> bool:
    """A swappable model replaced by another (``auth.User`` under a custom user model)."""
    setting = model.options.get("swappable")
    if not setting:
        return False
    from django.conf import settings

    swapped_for = getattr(settings, setting, None)
    return bool(swapped_for) and swapped_for.lower() != f"{model.app_label}.{model.name_lower}"
