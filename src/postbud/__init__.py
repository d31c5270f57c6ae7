"""postbud: dependable mail and error alerts through Gmail's SMTP service.

The public API is what ``__all__`` lists; modules and packages starting with ``_`` are
private (their layout is drawn in docs/architecture.md). Importing postbud loads only
the standard library: google-auth, Django, Flask and aiosmtpd load when the feature
that needs them is first used.
"""

from __future__ import annotations

from . import errors
from ._auth import AppPassword, Credentials
from ._check import CheckReport, CheckStep, diagnose
from ._config import Settings, SettingsKwargs
from ._mailer import Mailer, SendResult
from ._message import Envelope
from ._oauth import OAuth2
from ._secret import Secret
from ._smtp import Probe, SMTPTransport, Transport
from ._version import __version__
from .alerts import AlertHandler, alert_on_crash
from .errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    InvalidMessageError,
    MessageRefusedError,
    MissingDependencyError,
    PostbudError,
    QuotaExceededError,
    RecipientsRefusedError,
    RefusedError,
    SenderRefusedError,
    SMTPTimeoutError,
    TokenRefreshError,
    TransportError,
)

__all__ = [
    "AlertHandler",
    "AppPassword",
    "AuthenticationError",
    "CheckReport",
    "CheckStep",
    "ConfigurationError",
    "Credentials",
    "DeliveryError",
    "Envelope",
    "InvalidMessageError",
    "Mailer",
    "MessageRefusedError",
    "MissingDependencyError",
    "OAuth2",
    "PostbudError",
    "Probe",
    "QuotaExceededError",
    "RecipientsRefusedError",
    "RefusedError",
    "SMTPTimeoutError",
    "SMTPTransport",
    "Secret",
    "SendResult",
    "SenderRefusedError",
    "Settings",
    "SettingsKwargs",
    "TokenRefreshError",
    "Transport",
    "TransportError",
    "__version__",
    "alert_on_crash",
    "diagnose",
    "errors",
]

# Reprs, tracebacks and the docs name the public path (postbud.Mailer), not the private
# module a class happens to live in. The errors keep postbud.errors: it is public.
for _name in __all__:
    _value = globals()[_name]
    if any(part.startswith("_") for part in getattr(_value, "__module__", "").split(".")):
        _value.__module__ = __name__
del _name, _value
