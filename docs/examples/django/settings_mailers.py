"""The same site on Django 6.1 with MAILERS: each alias's OPTIONS hold its account and
its connection (postbud's names, or Django's SMTP names as here); POSTBUD holds only
what every mailer of the process shares."""

import os

gmail = {
    "username": "me@gmail.com",
    "password": os.environ["GMAIL_APP_PASSWORD"],  # Django's name for app_password
    "use_tls": True,  # port 587, STARTTLS
    "timeout": 10,
}

MAILERS = {
    "default": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": gmail},
    # send_mail(..., using="queued") puts the message in postbud's outbox and returns
    "queued": {"BACKEND": "django_postbud.EmailBackend", "OPTIONS": {**gmail, "background": True}},
}
POSTBUD = {"ALERT_TAG": "prod", "MAX_AGE": 24 * 3600}
DEFAULT_FROM_EMAIL = "My Site <me@gmail.com>"
SERVER_EMAIL = "me@gmail.com"
