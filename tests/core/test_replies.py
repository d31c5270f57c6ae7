"""Every Gmail reply DESIGN.md lists maps to its error class, retryability and hint.

Classification uses the reply code and the enhanced status code, never the prose:
the same reply reworded still lands in the same place.
"""

from __future__ import annotations

import pytest

from postbud._smtp import classify, summary
from postbud.errors import (
    AuthenticationError,
    DeliveryError,
    MessageRefusedError,
    QuotaExceededError,
    RecipientsRefusedError,
    RefusedError,
    SenderRefusedError,
    TransportError,
)
from postbud.testing import replies


def as_smtplib(reply: str) -> tuple[int, str]:
    """What smtplib hands us: the code, and the lines without their code prefixes."""
    lines = replies.render(reply, session_id="sid", address="x@y.z").split("\r\n")
    return int(lines[0][:3]), "\n".join(line[4:] for line in lines)


CASES = [
    # reply, stage, class, retryable, retry_after, words of the hint
    (replies.BAD_CREDENTIALS, "auth", AuthenticationError, False, None, "apppasswords"),
    (
        replies.APP_PASSWORD_REQUIRED,
        "auth",
        AuthenticationError,
        False,
        None,
        "Gmail wants an app password",
    ),
    (replies.WEB_LOGIN_REQUIRED, "auth", AuthenticationError, False, None, "web browser"),
    (replies.TOO_MANY_LOGINS, "auth", AuthenticationError, True, 300.0, "wait several minutes"),
    (replies.TEMPORARY_AUTH_PROBLEM, "auth", AuthenticationError, True, 300.0, "throttling"),
    (replies.AUTH_REQUIRED, "mail", AuthenticationError, False, None, "this is a bug"),
    (replies.STARTTLS_REQUIRED, "auth", AuthenticationError, False, None, "this is a bug"),
    (replies.TRY_AGAIN_LATER, "mail", TransportError, True, None, "reconnects"),
    (replies.TRY_AGAIN_LATER, "connect", TransportError, True, None, "reconnects"),
    (replies.CONNECTION_EXPIRED, "rcpt", TransportError, True, None, "reconnects"),
    (replies.IDLE_TIMEOUT, "mail", TransportError, True, None, "idle connection"),
    (replies.TEMPORARY_REJECTION, "data", MessageRefusedError, True, None, None),
    (replies.TOO_MANY_RECIPIENTS, "rcpt", RecipientsRefusedError, True, None, "splits at 100"),
    (replies.DAILY_LIMIT_EXCEEDED, "mail", QuotaExceededError, True, 3600.0, "daily sending"),
    (replies.DAILY_LIMIT_EXCEEDED, "data", QuotaExceededError, True, 3600.0, "nothing was lost"),
    (replies.MESSAGE_TOO_BIG, "data", MessageRefusedError, False, None, "25 MB"),
    (replies.MESSAGE_TOO_BIG, "mail", MessageRefusedError, False, None, "25 MB"),
    (replies.BAD_RECIPIENT, "rcpt", RecipientsRefusedError, False, None, "RFC 5321"),
    (replies.BAD_SENDER, "mail", SenderRefusedError, False, None, "check username and sender"),
    (replies.SYNTAX_ERROR, "mail", RefusedError, False, None, "could not parse"),
    (replies.TLS_NOT_AVAILABLE, "starttls", TransportError, True, None, None),
    (
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly.",
        "rcpt",
        RecipientsRefusedError,
        True,
        None,
        None,
    ),
    ("550 5.7.1 Message rejected by policy.", "data", MessageRefusedError, False, None, None),
    ("554 5.7.0 Too many unauthenticated commands.", "helo", RefusedError, False, None, None),
]


@pytest.mark.parametrize(("reply", "stage", "kind", "retryable", "retry_after", "hint"), CASES)
def test_reply_map(
    reply: str,
    stage: str,
    kind: type[DeliveryError],
    retryable: bool,
    retry_after: float | None,
    hint: str | None,
) -> None:
    code, text = as_smtplib(reply)
    refused = {"x@y.z": (code, text)} if kind is RecipientsRefusedError else None
    err = classify(
        code,
        text,
        stage=stage,  # type: ignore[arg-type]
        username="me@gmail.com",
        refused=refused,
    )
    assert type(err) is kind
    assert (err.code, err.retryable, err.retry_after) == (code, retryable, retry_after)
    if hint is None:
        assert err.hint is None
    else:
        assert hint in (err.hint or "")
    assert err.message == text
    assert "gsmtp" not in err.description  # the session-id tail is noise


def test_prose_does_not_matter() -> None:
    err = classify(534, "5.7.9 Google rewrote this sentence entirely.", stage="auth")
    assert "Gmail wants an app password" in (err.hint or "")


def test_oauth_wording_of_bad_credentials() -> None:
    code, text = as_smtplib(replies.BAD_CREDENTIALS)
    err = classify(code, text, stage="auth", username="me@gmail.com", credential="OAuth2 token")
    assert "did not accept the OAuth2 token for me@gmail.com" in (err.hint or "")
    assert "https://mail.google.com/ scope" in (err.hint or "")


def test_summary_joins_lines() -> None:
    assert summary(as_smtplib(replies.DAILY_LIMIT_EXCEEDED)[1]) == (
        "5.4.5 Daily user sending limit exceeded. For more information on Gmail sending "
        "limits go to https://support.google.com/a/answer/166852"
    )


def test_every_recipient_refused_is_a_recipients_error() -> None:
    code, text = as_smtplib(replies.SYNTAX_ERROR)
    err = classify(code, text, stage="rcpt", refused={"a@b.c": (code, text)})
    assert isinstance(err, RecipientsRefusedError) and err.refused == {"a@b.c": (code, text)}
    code, text = as_smtplib(replies.DAILY_LIMIT_EXCEEDED)
    quota = classify(code, text, stage="rcpt", refused={"a@b.c": (code, text)})
    assert isinstance(quota, QuotaExceededError)
