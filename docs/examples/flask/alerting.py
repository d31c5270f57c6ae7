"""Error alerts for a Flask app: every unhandled exception of its views is mailed once,
with the request (secrets masked); repeats are counted into one follow-up."""

import os

from flask import Flask

from flask_postbud import Postbud

app = Flask(__name__)
app.config.update(
    POSTBUD_USERNAME="me@gmail.com",
    POSTBUD_APP_PASSWORD=os.environ["GMAIL_APP_PASSWORD"],  # a Google app password
    POSTBUD_ALERTS_TO=["oncall@example.com"],  # or "a@example.com, b@example.com"
    POSTBUD_ALERT_TAG="shop-prod",  # in every alert's subject
)
postbud = Postbud(app)


@app.get("/orders/<int:order_id>")
def order(order_id: int) -> str:
    raise LookupError(f"order {order_id} is not in the database")
