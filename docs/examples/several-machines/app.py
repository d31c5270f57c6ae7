"""The app of docker-compose.yml: it reads postbud's settings from the environment
(POSTBUD_STATE puts the shared state on Redis), sends mail and logs errors through
an AlertHandler. Every copy of it, on every machine, shares one daily limit."""

import json
import logging
import os

import postbud

mailer = postbud.Mailer(postbud.Settings.from_env())
alerts = postbud.AlertHandler(to=os.environ.get("ALERTS_TO"), mailer=mailer)
log = logging.getLogger("app")
log.addHandler(alerts)

sent = waited = 0
for n in range(int(os.environ.get("APP_MAILS", "3"))):
    try:
        mailer.send(f"customer{n}@example.com", "Your receipt", "Thank you.")
        sent += 1
    except postbud.QuotaExceededError:
        waited += 1  # the fleet's daily limit is used up (submit() would queue it)
log.error("payment provider timed out")

alerts.close()  # sends what it counted
mailer.close()
print(json.dumps({"sent": sent, "waited": waited}))
