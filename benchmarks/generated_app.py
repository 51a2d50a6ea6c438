"""A throwaway Django project with one app of N generated migrations, for benchmarks.

The app's migrations mix what real projects have: new models, added and altered
fields, indexes and small data migrations.
"""

import compileall
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """\
import os
SECRET_KEY = "benchmark"
# Off as a deploy runs; BENCH_DEBUG=1 as on a laptop (every query logged; on SQLite,
# Django re-queries each statement's parameters to log it).
DEBUG = os.environ.get("BENCH_DEBUG") == "1"
USE_TZ = True
INSTALLED_APPS = [{apps}, "migrator", "benchapp"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                          "NAME": os.environ.get("BENCH_DB", "{db}")}}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MIGRATOR = {{"ENVIRONMENT": "benchmark"}}
# What django.contrib.admin's system checks ask for, as startproject writes it.
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {{"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}}}]
STATIC_URL = "static/"
"""


def _migration(number: int, first_dependencies: list[tuple[str, str]]) -> str:
    previous = f'[("benchapp", "{number - 1:04d}_step")]' if number > 1 else first_dependencies
    model = f"Thing{(number - 1) // 6}"
    kind = (number - 1) % 6
    if kind == 0:
        operation = f"""migrations.CreateModel(
            name="{model}",
            fields=[("id", models.AutoField(primary_key=True)),
                    ("name", models.CharField(max_length=50, default=""))],
        )"""
    elif kind == 1:
        operation = (
            f'migrations.AddField("{model.lower()}", "size", models.IntegerField(default=0))'
        )
    elif kind == 2:
        operation = f"""migrations.AlterField("{model.lower()}", "name",
            models.CharField(max_length=80, default=""))"""
    elif kind == 3:
        operation = f"""migrations.AddIndex("{model.lower()}",
            models.Index(fields=["size"], name="bench_{number:04d}_idx"))"""
    elif kind == 4:
        operation = f"""migrations.RunPython(
            lambda apps, editor: apps.get_model("benchapp", "{model}").objects.using(
                editor.connection.alias).create(name="seed"),
            migrations.RunPython.noop,
        )"""
    else:
        operation = f"""migrations.AddField("{model.lower()}", "note",
            models.TextField(null=True, blank=True))"""
    return textwrap.dedent(
        f"""\
        from django.db import migrations, models


        class Migration(migrations.Migration):
            dependencies = {previous}
            operations = [
                {operation},
            ]
        """
    )


CONTRIB_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
# A whole project as ``startproject`` makes it.
STARTPROJECT_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]


def make_project(
    directory: Path,
    count: int = 300,
    contrib: list[str] = CONTRIB_APPS,
    *,
    after_migrator: bool = False,
) -> Path:
    """Write settings and an app with ``count`` migrations under ``directory``; return it.

    ``contrib``: the Django apps installed before migrator and the generated app;
    ``after_migrator``: the app's first migration depends on migrator's last, so that
    ``migrate`` too makes migrator's tables before the app's (by label order it makes them
    after: "benchapp" sorts before "migrator").
    """
    compile_migrator()
    migrations_dir = directory / "benchapp" / "migrations"
    migrations_dir.mkdir(parents=True, exist_ok=True)
    (directory / "benchapp" / "__init__.py").write_text("")
    (directory / "benchapp" / "models.py").write_text("")
    (migrations_dir / "__init__.py").write_text("")
    first = [("migrator", last_migrator_migration())] if after_migrator else []
    for number in range(1, count + 1):
        (migrations_dir / f"{number:04d}_step.py").write_text(_migration(number, first))
    apps = ", ".join(repr(app) for app in contrib)
    (directory / "bench_settings.py").write_text(
        SETTINGS.format(db=directory / "db.sqlite3", apps=apps)
    )
    return directory


def last_migrator_migration() -> str:
    return max(path.stem for path in (ROOT / "migrator" / "migrations").glob("[0-9]*.py"))


def compile_migrator() -> None:
    """Write migrator's bytecode, as installing a package does, so that no timed run
    compiles it: the children run with PYTHONDONTWRITEBYTECODE (the generated migrations
    are compiled alike by every command timed), and Django's bytecode is in site-packages
    already. Without it, each ``safemigrate`` child compiled migrator's modules again,
    about 0.06 s charged to its overhead."""
    compileall.compile_dir(ROOT / "migrator", quiet=1)


def project_env(directory: Path, repo_root: Path, **extra: str) -> dict[str, str]:
    """Environment for a child ``django-admin`` in the generated project."""
    import os

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "PYTHONPATH": os.pathsep.join([str(directory), str(repo_root)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def django_admin(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]
