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

__all__ = ["FakeGmail", "MemoryTransport", "ReceivedMessage", "replies"]


def __getattr__(name: str) -> Any:
    # FakeGmail imports aiosmtpd, trustme and pytest-localserver: only when asked for.
    if name == "FakeGmail":
        try:
            from ._fake import FakeGmail
        except ImportError as exc:
            from postbud.errors import MissingDependencyError

            raise MissingDependencyError(
                f"FakeGmail needs {exc.name or 'the testing extra'}: "
                "pip install 'postbud[testing]'",
                package=exc.name,
            ) from exc
        return FakeGmail
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
