"""Secret masking: the one function every text leaving migrator goes through.

Errors, audit rows, notifications, logs, manifests and ``--json`` documents can all carry
text that came from a database driver or a migration, and such text quotes connection
strings. ``mask`` replaces with ``***``: credentials in URLs, values after ``password=``
(and similar) in connection strings, values under secret-named keys, and the literal
password of every configured database (``PASSWORD`` and password-bearing ``OPTIONS``).

This module sits at the bottom of the package (it imports only Django), so anything may
use it without an import cycle.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from django.db import connections

MASK: Final = "***"
SECRET_NAMES: Final = re.compile(r"pass|secret|token|key|credential", re.I)
CREDENTIALS_IN_URL: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.I
)
# password=x, PASSWORD: 'x', sslpassword="x y": libpq keywords, DSNs, Python reprs.
SECRET_ASSIGNMENT: Final = re.compile(
    r"""(?P<name>\b[\w-]*(?:password|passwd|pwd|secret|token)['"]?\s*[=:]\s*)"""
    r"""(?P<value>'[^']*'|"[^"]*"|[^\s,;&)}'"]+)""",
    re.I,
)
MINIMUM_LITERAL: Final = 3  # shorter passwords would mask ordinary words


def mask(value: Any, *, secrets: Iterable[str] | None = None) -> Any:
    """``value`` (text, or mappings and lists of them) with every secret replaced by ``***``.

    ``secrets``: literal secrets to mask; by default those of every configured database
    (pass ``configured_secrets()`` computed earlier when masking in another thread).
    """
    literals = sorted(
        set(configured_secrets() if secrets is None else secrets), key=len, reverse=True
    )
    return _mask(value, literals)


def configured_secrets(*settings_dicts: Mapping[str, Any]) -> list[str]:
    """The literal passwords of every configured database, and of ``settings_dicts``.

    Read from the configured settings (the dicts the connections use), not the connections:
    opening each would import every configured backend (11 MB for psycopg2)."""
    found = [*settings_dicts, *connections.settings.values()]
    secrets = set()
    for settings_dict in found:
        options = settings_dict.get("OPTIONS") or {}
        candidates = [settings_dict.get("PASSWORD")]
        candidates += [val for key, val in options.items() if SECRET_NAMES.search(str(key))]
        secrets.update(secret for secret in candidates if isinstance(secret, str))
    return [secret for secret in secrets if len(secret) >= MINIMUM_LITERAL]


def _mask(value: Any, literals: list[str]) -> Any:
    if isinstance(value, str):
        value = CREDENTIALS_IN_URL.sub(rf"\g<scheme>{MASK}@", value)
        value = SECRET_ASSIGNMENT.sub(rf"\g<name>{MASK}", value)
        for literal in literals:
            value = value.replace(literal, MASK)
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK if SECRET_NAMES.search(str(key)) and val else _mask(val, literals)
            for key, val in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(item, literals) for item in value]
    return value
