"""App configs a project may give installed packages."""

from taggit.apps import TaggitAppConfig


class BigIdTaggitConfig(TaggitAppConfig):
    """taggit with 64-bit ids: its models then differ from its migrations (AutoField), as a
    package's do under a project's DEFAULT_AUTO_FIELD when it sets none of its own."""

    default_auto_field = "django.db.models.BigAutoField"
