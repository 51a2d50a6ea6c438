"""The Django admin pages: runs, hashes and status, read-only, behind the view permission."""

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from migrator.models import MigrationHash, Run
from tests.utils import run_command

ADMIN_APPS = ["django.contrib.admin", "django.contrib.messages", "django.contrib.sessions"]


class OneDatabase:
    """Route every query of the admin to the database under test."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model, **hints) -> str:
        return self.alias

    db_for_write = db_for_read


@pytest.fixture
def admin_db(db_alias, settings):
    """The database under test, migrated by safemigrate, seen through the Django admin."""
    settings.INSTALLED_APPS = [*ADMIN_APPS, *settings.INSTALLED_APPS]
    settings.ROOT_URLCONF = "project.urls"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ]
    settings.DATABASE_ROUTERS = [OneDatabase(db_alias)]
    assert run_command("safemigrate", database=db_alias)[2] == 0
    return db_alias


def client_for(alias: str, username: str, **flags: bool) -> tuple[Client, User]:
    user = User.objects.db_manager(alias).create_user(username, password="unused", **flags)
    client = Client()
    client.force_login(user)
    return client, user


def test_a_superuser_sees_runs_hashes_and_status_read_only(admin_db):
    client, _ = client_for(admin_db, "root", is_staff=True, is_superuser=True)
    run = Run.objects.using(admin_db).get()

    runs = client.get("/admin/migrator/run/")
    assert runs.status_code == 200
    page = runs.content.decode()
    assert f'<a href="/admin/migrator/run/{run.pk}/change/">{run.pk}</a>' in page
    assert "safemigrate" in page
    assert "succeeded" in page
    assert "delete_selected" not in page  # no delete action
    assert "/admin/migrator/run/status/" in page
    filtered = client.get("/admin/migrator/run/", {"outcome": "failed"})
    assert "0 runs" in filtered.content.decode()

    detail = client.get(f"/admin/migrator/run/{run.pk}/change/").content.decode()
    assert "0001_initial" in detail  # the steps, inline
    assert 'name="_save"' not in detail
    assert client.get("/admin/migrator/run/add/").status_code == 403
    assert client.get(f"/admin/migrator/run/{run.pk}/delete/").status_code == 403
    assert client.post(f"/admin/migrator/run/{run.pk}/change/", {}).status_code == 403
    assert Run.objects.using(admin_db).filter(pk=run.pk).exists()


def test_the_status_page_shows_pending_migrations_by_stage(admin_db, scenario):
    client, _ = client_for(admin_db, "root", is_staff=True, is_superuser=True)
    scenario("basic")  # four migrations now pending, all before_deploy
    status = client.get("/admin/migrator/run/status/")
    assert status.status_code == 200
    html = status.content.decode()
    assert f'id="status-{admin_db}"' in html
    panel = next(p for p in status.context["panels"] if p["alias"] == admin_db)["status"]
    assert panel["pending_by_stage"]["before_deploy"][0] == "scenarios.0001_initial"
    assert panel["pending_by_stage"]["after_deploy"] == []
    assert (panel["problems"], panel["lock_holder"]) == ([], None)
    assert "<th>Pending before deploy</th><td>scenarios.0001_initial<br>" in html
    assert "<th>Lock holder</th><td>nobody</td>" in html


def test_hashes_show_their_verification_state(admin_db):
    client, _ = client_for(admin_db, "root", is_staff=True, is_superuser=True)
    edited = MigrationHash.objects.using(admin_db).get(app_label="ledger", name="0002_entry_email")
    edited.checksum = "sha256:1:" + "0" * 64
    edited.save(using=admin_db)
    page = client.get("/admin/migrator/migrationhash/", {"app_label": "ledger"})
    html = page.content.decode()
    ledger = MigrationHash.objects.using(admin_db).filter(app_label="ledger").count()
    assert html.count('class="field-verification">changed<') == 1
    assert html.count('class="field-verification">verified<') == ledger - 1
    assert client.get("/admin/migrator/migrationhash/add/").status_code == 403


def test_hashes_are_named_in_plain_english(admin_db):
    client, _ = client_for(admin_db, "root", is_staff=True, is_superuser=True)
    index = client.get("/admin/").content.decode()
    assert ">Migration hashes</a>" in index
    assert "hashs" not in index.lower()
    listing = client.get("/admin/migrator/migrationhash/").content.decode()
    assert "Select migration hash to view" in listing
    assert "migration hashes" in listing
    assert "hashs" not in listing.lower()


def test_staff_without_view_permission_sees_nothing_of_migrator(admin_db):
    client, user = client_for(admin_db, "staff", is_staff=True)
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "/admin/migrator/" not in index.content.decode()
    for url in ("/admin/migrator/run/", "/admin/migrator/migrationhash/", "/admin/migrator/"):
        assert client.get(url).status_code in (403, 404), url
    assert client.get("/admin/migrator/run/status/").status_code == 403

    view_runs = Permission.objects.using(admin_db).get(codename="view_run")
    user.user_permissions.add(view_runs)
    assert client.get("/admin/migrator/run/").status_code == 200
    assert client.get("/admin/migrator/run/status/").status_code == 200
    assert client.get("/admin/migrator/migrationhash/").status_code == 403


def _hash_records_of_their_own_runs(alias: str, count: int, *, app_label: str) -> None:
    """``count`` hash records, each of a run of its own (the list's ``run`` column)."""
    runs = Run.objects.using(alias).bulk_create(
        Run(command="safemigrate", database=alias, environment="test", actor="ci", host="h", pid=1)
        for _ in range(count)
    )
    MigrationHash.objects.using(alias).bulk_create(
        MigrationHash(app_label=app_label, name=f"{n:04d}_step", checksum="sha256:1:0", run=run)
        for n, run in enumerate(runs)
    )


def test_the_hashes_list_makes_as_many_queries_for_100_rows_as_for_10(admin_db):
    client, _ = client_for(admin_db, "root", is_staff=True, is_superuser=True)

    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connections[admin_db]) as queries:
            assert client.get("/admin/migrator/migrationhash/").status_code == 200
        return len(queries)

    _hash_records_of_their_own_runs(admin_db, 10, app_label="ten")
    ten = queries_for_the_list()
    _hash_records_of_their_own_runs(admin_db, 90, app_label="ninety")
    assert queries_for_the_list() == ten
