"""How an app's findings are shown: by who owns its migrations, and ``MIGRATOR["APP_RISKS"]``.

A team cannot edit a migration of an installed package (site-packages), and a data
migration that runs on the empty tables of an app new to the database has nothing to
act on: such findings are information, listed by ``--plan`` and ``-v 2``, not warnings
repeated at every fresh deploy. ``APP_RISKS`` raises an app back to warnings ("warn") or
hides its findings from human output ("mute"). A finding that destroys data that exists
keeps its grade whatever the app: that is never noise.
"""

from dataclasses import dataclass, replace
from typing import Final

from django.db.migrations.loader import MigrationLoader

from migrator.conf import get_settings
from migrator.packages import third_party_apps
from migrator.risks.findings import Finding
from migrator.types import MIGRATOR_APP

# Codes whose effect migrator cannot see: on an app new to the database they run on empty
# tables (RunPython, RunSQL).
OPAQUE_CODES: Final = frozenset({"ML501", "ML502"})


@dataclass(frozen=True)
class AppPolicy:
    app_label: str
    level: str  # warn | info | mute
    package: bool  # its migrations live in an installed package
    fresh: bool  # none of its migrations is applied yet: its tables are new

    def apply(self, finding: Finding) -> Finding:
        origin = "package" if self.package else "project"
        finding = replace(finding, origin=origin)
        if self.package:
            finding = replace(finding, hint=self.package_hint())
        if finding.data_loss:
            return finding
        if self.fresh and finding.code in OPAQUE_CODES:
            finding = replace(
                finding,
                severity="info",
                message=f"{finding.message} Its app is new on this database: its tables are empty.",
            )
        if self.level == "warn":
            return finding
        return replace(finding, severity="info", muted=self.level == "mute")

    def package_hint(self) -> str:
        return (
            f"{self.app_label} is an installed package: its migrations are not yours to edit; "
            "check its release notes, or set MIGRATOR['APP_RISKS'] = "
            f"{{{self.app_label!r}: 'warn'}} to see its findings as warnings ('mute' hides them)."
        )


def app_policies(loader: MigrationLoader, app_labels: set[str]) -> dict[str, AppPolicy]:
    """The policy of each app of a plan."""
    levels = get_settings().app_risks
    # migrator's own migrations are an installed package's wherever it is installed from
    # (a checkout too): the project cannot edit them, and every run applies them first.
    packages = {**third_party_apps(loader), MIGRATOR_APP: True}
    applied_apps = {app_label for app_label, _ in loader.applied_migrations}
    return {
        app_label: AppPolicy(
            app_label=app_label,
            level=levels.get(app_label, "info" if packages.get(app_label) else "warn"),
            package=packages.get(app_label, False),
            fresh=app_label not in applied_apps,
        )
        for app_label in app_labels
    }
