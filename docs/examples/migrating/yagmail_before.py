"""A nightly report mailed with yagmail (before postbud)."""

import os

import yagmail

yag = yagmail.SMTP("me@gmail.com", os.environ["GMAIL_APP_PASSWORD"])
yag.send(
    to=["ann@example.com", "bob@example.com"],
    subject="Nightly report",
    contents=[
        "All jobs finished.\nThe figures are attached.",
        yagmail.inline("logo.png"),
    ],
    attachments=["report.pdf"],
)
yag.close()
