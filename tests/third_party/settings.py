"""The suite's settings with the third-party apps installed (``DJANGO_SETTINGS_MODULE``).

``MIGRATOR_TEST_BIG_TAGGIT_IDS``: taggit with 64-bit ids, its models then differing from
its migrations (tests.third_party.apps).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS
from tests.third_party import THIRD_PARTY_APPS, THIRD_PARTY_SETTINGS

INSTALLED_APPS = [*INSTALLED_APPS, *THIRD_PARTY_APPS]
if os.environ.get("MIGRATOR_TEST_BIG_TAGGIT_IDS"):
    INSTALLED_APPS[INSTALLED_APPS.index("taggit")] = "tests.third_party.apps.BigIdTaggitConfig"
AUTHENTICATION_BACKENDS = THIRD_PARTY_SETTINGS["AUTHENTICATION_BACKENDS"]
MIDDLEWARE = THIRD_PARTY_SETTINGS["MIDDLEWARE"]
