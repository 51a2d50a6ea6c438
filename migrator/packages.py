"""Which apps are installed packages (site-packages): code the project does not own.

Their migrations cannot be edited by the team (an edit would itself be an integrity
problem, and the next upgrade undoes it), so integrity problems and risk findings about
them are reported differently from the project's own (``THIRD_PARTY_STRICT``,
``APP_RISKS``).
"""

import sys
from pathlib import Path
from typing import Final

from django.apps import apps
from django.db.migrations.loader import MigrationLoader

THIRD_PARTY_DIRS: Final = frozenset({"site-packages", "dist-packages"})


def third_party_apps(loader: MigrationLoader) -> dict[str, bool]:
    """Each migrated app: whether its migrations live in an installed package."""
    result = {}
    for app_label in loader.migrated_apps:
        module_name, _ = MigrationLoader.migrations_module(app_label)
        module = sys.modules.get(module_name or "")
        location = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", None) or ()), None
        )
        if location is None:
            location = apps.get_app_config(app_label).path
        result[app_label] = not THIRD_PARTY_DIRS.isdisjoint(Path(location).parts)
    return result
