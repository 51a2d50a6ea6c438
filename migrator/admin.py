"""Read-only Django admin pages for migrator's records: runs, migration hashes, status.

The records are an audit: nobody adds, changes or deletes one through the admin, superuser
or not. Seeing them takes the models' ``view`` permissions, as for any model.
"""

from functools import cache
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from migrator import integrity
from migrator.exceptions import MigratorError
from migrator.models import MigrationHash, Run, RunStep
from migrator.status import database_status


class ReadOnlyAdmin(admin.ModelAdmin):
    """View permission only: no add page, no change form, no delete action."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RunStepInline(admin.TabularInline):
    model = RunStep
    fields = ("app_label", "name", "direction", "fake", "duration", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "command",
        "database",
        "environment",
        "outcome",
        "actor",
        "host",
        "started_at",
        "duration_seconds",
        "backup_id",
        "error_line",
    )
    list_filter = ("command", "outcome", "database", "environment")
    search_fields = ("actor", "host", "backup_id", "error", "failed_migration")
    date_hierarchy = "started_at"
    inlines = (RunStepInline,)
    change_list_template = "admin/migrator/run/change_list.html"

    @admin.display(description="duration (s)")
    def duration_seconds(self, run: Run) -> str:
        return "" if run.duration is None else f"{run.duration:.1f}"

    @admin.display(description="error")
    def error_line(self, run: Run) -> str:
        return run.error.splitlines()[0] if run.error else ""

    def get_urls(self) -> list:
        status = self.admin_site.admin_view(self.status_view)
        return [path("status/", status, name="migrator_status"), *super().get_urls()]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        """One panel per configured database: pending, integrity, lock holder, latest backup."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Migration status",
            "opts": self.model._meta,
            "panels": [_status_panel(alias) for alias in connections],
        }
        return TemplateResponse(request, "admin/migrator/status.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {**(extra_context or {}), "status_url": reverse("admin:migrator_status")}
        return super().changelist_view(request, extra_context=extra)


def _status_panel(alias: str) -> dict[str, Any]:
    try:
        return {"alias": alias, "status": database_status(alias).as_dict(), "error": ""}
    except (MigratorError, DatabaseError) as exc:
        return {"alias": alias, "status": None, "error": str(exc).splitlines()[0]}


@admin.register(MigrationHash)
class MigrationHashAdmin(ReadOnlyAdmin):
    list_display = ("app_label", "name", "short_checksum", "applied_at", "run", "verification")
    list_select_related = ("run",)  # nullable: the admin would not follow it, a query per row
    list_filter = ("app_label",)
    search_fields = ("app_label", "name")
    readonly_fields = ("verification",)

    @admin.display(description="checksum")
    def short_checksum(self, record: MigrationHash) -> str:
        return integrity.short(record.checksum)

    @admin.display(description="verification")
    def verification(self, record: MigrationHash) -> str:
        return _verification_states(record._state.db).get(
            f"{record.app_label}.{record.name}", "verified"
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        _verification_states.cache_clear()  # the files as they are now, once per page
        return super().changelist_view(request, extra_context=extra_context)

    def change_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        _verification_states.cache_clear()
        return super().change_view(request, *args, **kwargs)


@cache
def _verification_states(database: str) -> dict[str, str]:
    """'changed', 'missing', ... per migration label, as ``verifymigrations`` finds them."""
    connection = connections[database]
    report = integrity.verify(connection, integrity.load(connection), check_models=False)
    return {problem.migration: problem.kind for problem in report.problems if problem.migration}
