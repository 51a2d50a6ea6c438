from django.apps import AppConfig


class MigratorConfig(AppConfig):
    name = "migrator"
    verbose_name = "Migrator"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks as django_checks

        from migrator import checks, conf  # noqa: F401  (conf connects setting_changed)

        django_checks.register(checks.check_settings)
        django_checks.register(checks.check_migration_integrity, django_checks.Tags.database)
        django_checks.register(checks.check_deploy_stages)
        django_checks.register(checks.check_backup_encryption)
        django_checks.register(checks.check_blocking_risks)
