"""The same nightly report with postbud: the text and the HTML are yours to write, the
attachments and inline images are arguments, and the result says who accepted it."""

import os

import postbud

with postbud.Mailer(
    username="me@gmail.com", app_password=os.environ["GMAIL_APP_PASSWORD"]
) as mailer:
    result = mailer.send(
        to=["ann@example.com", "bob@example.com"],
        subject="Nightly report",
        text="All jobs finished.\nThe figures are attached.",
        html=(
            "<p>All jobs finished.<br>The figures are attached.</p>"
            '<p><img src="cid:logo" alt="Logo"></p>'
        ),
        inline={"logo": "logo.png"},
        attachments=["report.pdf"],
    )
print(result.accepted)  # ('ann@example.com', 'bob@example.com')
