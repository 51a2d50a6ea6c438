import os
import sys

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def pause_at(point: str, *, in_a_thread: bool = False) -> None:
    """With ``PAUSE_AT=<point>``: print PAUSED and wait for a line on stdin.

    ``in_a_thread``: the wait reads the file descriptor itself; a daemon thread left waiting
    inside ``sys.stdin``'s buffer would hold its lock as the interpreter shuts down.
    """
    if os.environ.get("PAUSE_AT") == point:
        sys.__stdout__.write("PAUSED\n")  # the real stdout: --json redirects sys.stdout
        sys.__stdout__.flush()
        if in_a_thread:
            os.read(sys.stdin.fileno(), 1)
        else:
            sys.stdin.readline()


def pause_in_post_migrate(sender, **kwargs):
    """With ``PAUSE_AT=post_migrate``: pause inside the first post_migrate.

    The first app's receivers have run; the other apps' content types and permissions not.
    With ``PAUSE_AT=post_migrate:end``: pause once every other receiver has run.
    """
    if sender.label == "auth":
        pause_at("post_migrate")
    elif sender is [config for config in apps.get_app_configs() if config.models_module][-1]:
        pause_at("post_migrate:end")  # the last app post_migrate is sent for, the last receiver


def pause_in_migration_applied(sender, migration, **kwargs):
    """With ``PAUSE_AT=applied:<app_label.name>``: pause in a ``migration_applied``
    receiver, once that migration has committed."""
    pause_at(f"applied:{migration}")


def pause_in_run_started(sender, run, **kwargs):
    """With ``PAUSE_AT=started``: pause in a ``run_started`` receiver, the run's record made."""
    pause_at("started")


def pause_notified(summary: dict) -> None:
    """A ``MIGRATOR["NOTIFY"]`` receiver: with ``PAUSE_AT=notified:<app_label.name>``, pause
    while that migration's ``applied`` event is delivered."""
    pause_at(f"notified:{summary.get('migration')}", in_a_thread=True)


class ScenariosConfig(AppConfig):
    """A model-less app whose migrations each test chooses through MIGRATION_MODULES."""

    name = "tests.scenarios"
    label = "scenarios"

    def ready(self) -> None:
        from migrator.signals import migration_applied, run_started

        post_migrate.connect(pause_in_post_migrate, dispatch_uid="scenarios-pause")
        migration_applied.connect(pause_in_migration_applied, dispatch_uid="scenarios-pause")
        run_started.connect(pause_in_run_started, dispatch_uid="scenarios-pause")
