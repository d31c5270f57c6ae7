"""A site configured the Django 6.1 way: MAILERS (the fixtures fill in OPTIONS for
FakeGmail). Only for Django >= 6.1."""

from __future__ import annotations

from djangoproject.settings_common import *  # noqa: F403

MAILERS = {"default": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": {}}}
