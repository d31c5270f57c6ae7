"""Gmail's SMTP replies, word for word, for FakeGmail and for fault injection.

Texts come from real Gmail transcripts and Google's list of SMTP errors (see
shared/gmail-facts.md): multi-line replies keep Gmail's shape, the double spaces and
the ``<session-id> - gsmtp`` tail. ``{id}`` is replaced by the connection's session
id, ``{ts}`` by a Unix time and ``{address}`` by the address a reply is about.

Use them with ``FakeGmail.fail_next``::

    fake_gmail.fail_next("MAIL", replies.DAILY_LIMIT_EXCEEDED)
"""

from __future__ import annotations

__all__ = [
    "APP_PASSWORD_REQUIRED",
    "AUTH_ACCEPTED",
    "AUTH_REQUIRED",
    "BAD_CREDENTIALS",
    "BAD_RECIPIENT",
    "BAD_SENDER",
    "CANNOT_DECODE",
    "CLOSING",
    "CONNECTION_EXPIRED",
    "DAILY_LIMIT_EXCEEDED",
    "DATA_ACCEPTED",
    "DATA_GO_AHEAD",
    "EHLO_AUTH",
    "GREETING",
    "IDLE_TIMEOUT",
    "MAIL_OK",
    "MESSAGE_TOO_BIG",
    "NOOP_OK",
    "RCPT_OK",
    "RSET_OK",
    "STARTTLS_READY",
    "STARTTLS_REQUIRED",
    "SYNTAX_ERROR",
    "TEMPORARY_AUTH_PROBLEM",
    "TEMPORARY_REJECTION",
    "TLS_NOT_AVAILABLE",
    "TOO_MANY_LOGINS",
    "TOO_MANY_RECIPIENTS",
    "TRY_AGAIN_LATER",
    "WEB_LOGIN_REQUIRED",
    "XOAUTH2_ERROR_JSON",
    "render",
]

# -- session ------------------------------------------------------------------------
GREETING = "220 smtp.gmail.com ESMTP {id} - gsmtp"
EHLO_AUTH = "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"
STARTTLS_READY = "220 2.0.0 Ready to start TLS"
AUTH_ACCEPTED = "235 2.7.0 Accepted"
MAIL_OK = "250 2.1.0 OK {id} - gsmtp"
RCPT_OK = "250 2.1.5 OK {id} - gsmtp"
DATA_GO_AHEAD = "354  Go ahead {id} - gsmtp"
DATA_ACCEPTED = "250 2.0.0 OK  {ts} {id} - gsmtp"
NOOP_OK = "250 2.0.0 OK  {ts} {id} - gsmtp"
RSET_OK = "250 2.1.5 Flushed {id} - gsmtp"
CLOSING = "221 2.0.0 closing connection {id} - gsmtp"

# -- authentication -----------------------------------------------------------------
BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"
)
APP_PASSWORD_REQUIRED = (
    "534-5.7.9 Application-specific password required. For more information, go to\r\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"
)
WEB_LOGIN_REQUIRED = (
    "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbv0\r\n"
    "534-5.7.14 63j11G9o_fake> Please log in via your web browser and\r\n"
    "534-5.7.14 then try again.\r\n"
    "534-5.7.14  Learn more at\r\n"
    "534 5.7.14  https://support.google.com/mail/answer/78754 {id} - gsmtp"
)
TOO_MANY_LOGINS = "454 4.7.0 Too many login attempts, please try again later. {id} - gsmtp"
TEMPORARY_AUTH_PROBLEM = (
    "454 4.7.0 Cannot authenticate due to a temporary system problem. Try again later. {id} - gsmtp"
)
AUTH_REQUIRED = (
    "530-5.7.0 Authentication Required. For more information, go to\r\n"
    "530 5.7.0  https://support.google.com/mail/?p=WantAuthError {id} - gsmtp"
)
STARTTLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp"
TLS_NOT_AVAILABLE = "454 4.7.0 TLS not available due to temporary reason"
#: What Gmail sends (base64-encoded, after "334 ") when an XOAUTH2 token is refused.
XOAUTH2_ERROR_JSON = '{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
CANNOT_DECODE = "501 5.5.2 Cannot Decode response {id} - gsmtp"

# -- connection ---------------------------------------------------------------------
TRY_AGAIN_LATER = "421 4.7.0 Try again later, closing connection. {id} - gsmtp"
CONNECTION_EXPIRED = (
    "421 4.7.0 Connection expired, try reconnecting. For more information, go to About "
    "SMTP error messages. {id} - gsmtp"
)
IDLE_TIMEOUT = "451 4.4.2 Timeout - closing connection. {id} - gsmtp"

# -- the transaction ----------------------------------------------------------------
TEMPORARY_REJECTION = "451 4.3.0 Mail server temporarily rejected message. {id} - gsmtp"
TOO_MANY_RECIPIENTS = (
    "452-4.5.3 Your message has too many recipients. For more information regarding\r\n"
    "452-4.5.3 Google's sending limits, go to\r\n"
    "452 4.5.3  https://support.google.com/mail/?p=TooManyRecipientsError {id} - gsmtp"
)
DAILY_LIMIT_EXCEEDED = (
    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
    "550-5.4.5 sending limits go to\r\n"
    "550 5.4.5  https://support.google.com/a/answer/166852 {id} - gsmtp"
)
MESSAGE_TOO_BIG = (
    "552-5.3.4 Your message exceeded Google's message size limits. For more information, "
    "go to\r\n"
    "552 5.3.4  https://support.google.com/mail/?p=MaxSizeError {id} - gsmtp"
)
BAD_RECIPIENT = (
    "553-5.1.3 The recipient address <{address}> is not a valid RFC 5321 address. For more\r\n"
    "553-5.1.3 information, go to\r\n"
    "553-5.1.3  https://support.google.com/a/answer/3221692 and review RFC 5321\r\n"
    "553 5.1.3 specifications. {id} - gsmtp"
)
BAD_SENDER = (
    "553 5.1.7 The sender address <{address}> is not a valid RFC 5321 address. {id} - gsmtp"
)
SYNTAX_ERROR = (
    "555-5.5.2 Syntax error, cannot decode response. For more information, go to\r\n"
    "555 5.5.2  https://support.google.com/a/answer/3221692 and review RFC 5321 "
    "specifications. {id} - gsmtp"
)


def render(reply: str, *, session_id: str, address: str = "", ts: int = 0) -> str:
    """Fill in ``{id}``, ``{ts}`` and ``{address}`` (other braces are left alone)."""
    return reply.replace("{id}", session_id).replace("{ts}", str(ts)).replace("{address}", address)
