"""postbud: dependable mail and error alerts through Gmail's SMTP service.

The public API is what ``__all__`` lists; modules starting with ``_`` are private.
Importing postbud loads only the standard library: google-auth, Django, Flask and
aiosmtpd load when the feature that needs them is first used.
"""

from __future__ import annotations

from . import errors
from ._auth import AppPassword, Credentials
from ._config import Settings
from ._mailer import Mailer, SendResult
from ._message import Envelope
from ._oauth import OAuth2
from ._secret import Secret
from ._smtp import SMTPTransport, Transport
from ._version import __version__
from .alerts import AlertHandler, alert_on_crash
from .errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    PostbudError,
)

__all__ = [
    "AlertHandler",
    "AppPassword",
    "AuthenticationError",
    "ConfigurationError",
    "Credentials",
    "DeliveryError",
    "Envelope",
    "InvalidMessageError",
    "Mailer",
    "OAuth2",
    "PostbudError",
    "SMTPTransport",
    "Secret",
    "SendResult",
    "Settings",
    "Transport",
    "__version__",
    "alert_on_crash",
    "errors",
]
