"""A Flask app that mails with Flask-Mail (before postbud): its MAIL_* config, Message
objects, mail.send() and mail.connect()."""

import os

from flask import Flask
from flask_mail import Mail, Message

app = Flask(__name__)
app.config.update(
    MAIL_SERVER="smtp.gmail.com",
    MAIL_PORT=587,
    MAIL_USE_TLS=True,
    MAIL_USERNAME="me@gmail.com",
    MAIL_PASSWORD=os.environ["GMAIL_APP_PASSWORD"],  # a Google app password
    MAIL_DEFAULT_SENDER=("My Shop", "me@gmail.com"),
)
mail = Mail(app)


@app.post("/invite")
def invite() -> str:
    msg = Message(
        "You are invited",
        recipients=[("Ann Example", "ann@example.com")],
        body="Join us on Friday.",
        html="<p>Join us on <b>Friday</b>.</p>",
    )
    msg.attach("agenda.txt", "text/plain", b"18:00 drinks\n")
    mail.send(msg)
    return "sent"


@app.post("/newsletter")
def newsletter() -> str:
    with mail.connect() as conn:  # one connection, one login, for the whole batch
        for address in ["a@example.com", "b@example.com"]:
            conn.send(Message("News", recipients=[address], body="Hello!"))
    return "sent"
