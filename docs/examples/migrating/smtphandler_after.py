"""The same error mail through postbud's AlertHandler: logging only counts the record,
a thread mails it over verified TLS, and repeats of one error become one follow-up."""

import logging
import os

import postbud

handler = postbud.AlertHandler(
    "oncall@example.com",  # toaddrs: a string, comma-separated, or a list
    username="me@gmail.com",  # fromaddr and the login
    app_password=os.environ["GMAIL_APP_PASSWORD"],
    subject="Error in the shop: {message}",  # a template; the level is ERROR by default
)
logging.getLogger("shop").addHandler(handler)
