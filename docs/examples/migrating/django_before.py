"""The mail settings of a Django site that sends through Gmail with Django's SMTP backend
(before postbud); Django's default logging mails ADMINS with AdminEmailHandler."""

import os

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "smtp.gmail.com"
EMAIL_PORT = 587
EMAIL_USE_TLS = True
EMAIL_HOST_USER = "me@gmail.com"
EMAIL_HOST_PASSWORD = os.environ["GMAIL_APP_PASSWORD"]  # a Google app password
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "My Site <me@gmail.com>"
SERVER_EMAIL = "me@gmail.com"
