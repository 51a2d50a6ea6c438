"""A test project of popular third-party apps, installed by the ``test`` extra.

Their migrations are real code the team does not own: initial models, renamed indexes,
swappable dependencies and ``RunPython`` data migrations (django-oauth-toolkit's token
checksums, django-axes' deduplication), installed under site-packages as a deploy has them.
Each supports every Django series migrator does (django-celery-beat caps Django below 6.1,
so it is not here). Tests that need them use the ``third_party_apps`` fixture
(``tests/conftest.py``); child processes and manual trials use ``tests.third_party.settings``.
"""

THIRD_PARTY_APPS = [
    "taggit",
    "reversion",
    "guardian",
    "oauth2_provider",
    "axes",
]

# What they ask of a project's settings (their system checks warn otherwise).
THIRD_PARTY_SETTINGS = {
    "AUTHENTICATION_BACKENDS": [
        "axes.backends.AxesStandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
        "guardian.backends.ObjectPermissionBackend",
    ],
    "MIDDLEWARE": ["axes.middleware.AxesMiddleware"],
}
