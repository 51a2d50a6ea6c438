"""migrator's own tables: the run audit, the hash of each applied migration, batch progress."""

from django.db import models
from django.utils import timezone

from migrator.conf import ENVIRONMENT_MAX_LENGTH


class Run(models.Model):
    """One invocation of a migrator command that changed, or was asked to change, a database."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        REFUSED = "refused"

    command = models.CharField(max_length=40)
    arguments = models.JSONField(default=dict, blank=True)
    database = models.CharField(max_length=100)
    environment = models.CharField(max_length=ENVIRONMENT_MAX_LENGTH)
    actor = models.CharField(max_length=150)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    git_revision = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)
    failed_migration = models.CharField(max_length=255, blank=True)
    backup_id = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        # Newest first in the database's own order: started_at is each host's clock, and
        # the runs that change a database are serialised by its run lock.
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.command} #{self.pk} on {self.database!r}: {self.outcome}"

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class RunStep(models.Model):
    """A migration that a run applied or unapplied, written in that migration's transaction."""

    class Direction(models.TextChoices):
        APPLY = "apply"
        UNAPPLY = "unapply"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    app_label = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    fake = models.BooleanField(default=False)
    duration = models.FloatField(null=True, blank=True)
    finished_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.direction} {self.app_label}.{self.name}"


class MigrationHash(models.Model):
    """The hash of an applied migration's file, as it was when the migration was applied."""

    app_label = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    checksum = models.CharField(max_length=100)
    applied_at = models.DateTimeField(default=timezone.now)
    duration = models.FloatField(null=True, blank=True)  # the run's step, should it be killed
    # Only recorded (--fake): so is a killed run's rebuilt step. None: not known, written by
    # a migrator older than its migration 0004 (see migrator.0005).
    fake = models.BooleanField(null=True, default=False)
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="hashes"
    )

    class Meta:
        verbose_name_plural = "migration hashes"  # Django's default says "hashs"
        constraints = [
            models.UniqueConstraint(fields=["app_label", "name"], name="migrator_hash_unique")
        ]

    def __str__(self) -> str:
        return f"{self.app_label}.{self.name} {self.checksum}"


class BatchProgress(models.Model):
    """How far a batched data migration got, committed with each batch so a kill can resume."""

    app_label = models.CharField(max_length=255)
    migration = models.CharField(max_length=255)
    operation_index = models.PositiveIntegerField()
    direction = models.CharField(max_length=10, default="apply")
    last_pk = models.JSONField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    rows_estimated = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app_label", "migration", "operation_index", "direction"],
                name="migrator_batch_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.app_label}.{self.migration}[{self.operation_index}] {self.rows_done} rows"
