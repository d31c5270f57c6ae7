"""Write token.json for postbud: run once on a machine with a browser.

Needs: pip install google-auth-oauthlib, and client_secret.json of an OAuth client of
type "Desktop app" from the Google Cloud console (APIs & Services, Credentials).
"""

from __future__ import annotations

from pathlib import Path

from google_auth_oauthlib.flow import InstalledAppFlow

SCOPES = ["https://mail.google.com/"]  # the only scope Gmail accepts for SMTP


def main() -> None:
    flow = InstalledAppFlow.from_client_secrets_file("client_secret.json", scopes=SCOPES)
    # port=0 picks a free port; prompt="consent" makes Google return a refresh token
    # even if you authorised this client before.
    creds = flow.run_local_server(port=0, open_browser=True, prompt="consent")
    Path("token.json").write_text(creds.to_json())
    Path("token.json").chmod(0o600)
    print("token.json written; keep it as secret as a password.")


if __name__ == "__main__":
    main()
