"""What both settings modules share. The mail settings themselves are set by the
tests' fixtures (FakeGmail's port is known only when it runs)."""

from __future__ import annotations

from pathlib import Path

import django

SECRET_KEY = "django-postbud-tests-only"  # a test site's key
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_postbud",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "djangoproject.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # registration/: the password-reset mail's templates (django.contrib.admin, which
        # ships Django's own, is not installed here)
        "DIRS": [Path(__file__).parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Django 6.0 takes plain addresses and deprecates (name, address) pairs; 5.2 needs pairs.
ADMINS: list[str] | list[tuple[str, str]]
MANAGERS: list[str] | list[tuple[str, str]]
if django.VERSION >= (6, 0):
    ADMINS = ["ops@example.com"]
    MANAGERS = ["managers@example.com"]
else:
    ADMINS = [("Ops", "ops@example.com")]
    MANAGERS = [("Managers", "managers@example.com")]
SERVER_EMAIL = "postbud.test@gmail.com"
DEFAULT_FROM_EMAIL = "postbud.test@gmail.com"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests
