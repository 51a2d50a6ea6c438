"""The suite's settings with the third-party apps installed (``DJANGO_SETTINGS_MODULE``)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS
from tests.third_party import THIRD_PARTY_APPS, THIRD_PARTY_SETTINGS

INSTALLED_APPS = [*INSTALLED_APPS, *THIRD_PARTY_APPS]
AUTHENTICATION_BACKENDS = THIRD_PARTY_SETTINGS["AUTHENTICATION_BACKENDS"]
MIDDLEWARE = THIRD_PARTY_SETTINGS["MIDDLEWARE"]
