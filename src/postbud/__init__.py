"""postbud: dependable mail and error alerts through Gmail's SMTP service.

The public API is what ``__all__`` lists; modules and packages starting with ``_`` are
private (their layout is drawn in docs/architecture.md). Importing postbud loads only
the standard library: google-auth, Django, Flask and aiosmtpd load when the feature
that needs them is first used.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from . import errors
from ._version import __version__
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

if _typing.TYPE_CHECKING:
    from ._auth import AppPassword, Credentials
    from ._check import CheckReport, CheckStep, diagnose
    from ._config import Settings, SettingsKwargs
    from ._mailer import Mailer, SendResult
    from ._message import Envelope
    from ._oauth import OAuth2
    from ._secret import Secret
    from ._smtp import Probe, SMTPTransport, Transport
    from .alerts import AlertHandler, alert_on_crash

# Loaded on first use (PEP 562): ``import postbud`` costs the errors and the version
# only, so a program that imports it (a logging config, a CLI that may never mail)
# does not pay for SQLite, the email package's parser and the rest until it needs them.
_LAZY = {
    "AppPassword": "._auth",
    "Credentials": "._auth",
    "CheckReport": "._check",
    "CheckStep": "._check",
    "diagnose": "._check",
    "Settings": "._config",
    "SettingsKwargs": "._config",
    "Mailer": "._mailer",
    "SendResult": "._mailer",
    "Envelope": "._message",
    "OAuth2": "._oauth",
    "Secret": "._secret",
    "Probe": "._smtp",
    "SMTPTransport": "._smtp",
    "Transport": "._smtp",
    "AlertHandler": ".alerts",
    "alert_on_crash": ".alerts",
}

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


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'postbud' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    # Reprs, tracebacks and the docs name the public path (postbud.Mailer), not the
    # private module a class happens to live in.
    if any(part.startswith("_") for part in getattr(value, "__module__", "").split(".")):
        value.__module__ = __name__
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
