"""Test helpers users can rely on: a faithful fake Gmail and an in-memory transport.

``FakeGmail`` needs the testing extra (``pip install 'postbud[testing]'``);
``MemoryTransport`` and ``ReceivedMessage`` need nothing. The pytest plugin is
``postbud.testing.plugin`` (``pytest_plugins = ["postbud.testing.plugin"]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import replies
from ._memory import MemoryTransport
from ._records import ReceivedMessage

if TYPE_CHECKING:
    from ._fake import FakeGmail
    from ._tokens import FakeGoogleTokens

__all__ = ["FakeGmail", "FakeGoogleTokens", "MemoryTransport", "ReceivedMessage", "replies"]

_LAZY = {"FakeGmail": "_fake", "FakeGoogleTokens": "_tokens"}


def __getattr__(name: str) -> Any:
    # The fakes import aiosmtpd, trustme, werkzeug and pytest-localserver: only on demand.
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        except ImportError as exc:
            from postbud.errors import MissingDependencyError

            raise MissingDependencyError(
                f"{name} needs {exc.name or 'the testing extra'}: pip install 'postbud[testing]'",
                package=exc.name,
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
