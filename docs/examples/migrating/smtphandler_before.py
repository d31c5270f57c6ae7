"""Error mail with the standard library's SMTPHandler (before postbud): every record is
a connection, a STARTTLS and a login of its own, in the thread that logs."""

import logging
import logging.handlers
import os

handler = logging.handlers.SMTPHandler(
    mailhost=("smtp.gmail.com", 587),
    fromaddr="me@gmail.com",
    toaddrs=["oncall@example.com"],
    subject="Error in the shop",
    credentials=("me@gmail.com", os.environ["GMAIL_APP_PASSWORD"]),
    secure=(),  # STARTTLS; smtplib without a context checks no certificate
    timeout=10,
)
handler.setLevel(logging.ERROR)
logging.getLogger("shop").addHandler(handler)
