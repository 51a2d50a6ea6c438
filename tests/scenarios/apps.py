import os
import sys

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def pause_in_post_migrate(sender, **kwargs):
    """With ``PAUSE_AT=post_migrate``: print PAUSED and wait, inside the first post_migrate.

    The first app's receivers have run; the other apps' content types and permissions not.
    """
    if os.environ.get("PAUSE_AT") == "post_migrate" and sender.label == "auth":
        sys.__stdout__.write("PAUSED\n")  # the real stdout: --json redirects sys.stdout
        sys.__stdout__.flush()
        sys.stdin.readline()


class ScenariosConfig(AppConfig):
    """A model-less app whose migrations each test chooses through MIGRATION_MODULES."""

    name = "tests.scenarios"
    label = "scenarios"

    def ready(self) -> None:
        post_migrate.connect(pause_in_post_migrate, dispatch_uid="scenarios-pause")
