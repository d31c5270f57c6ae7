"""The ``postbud`` command line (also ``python -m postbud``): ``postbud.cli:main``.

One module per command (``_send``, ``_run``, ``_check``, ``_outbox``, ``_demo``), the
parser and dispatch in ``_main``, what they share in ``_common``.
"""

from __future__ import annotations

from ._common import EXIT_CONFIG, EXIT_DELIVERY, EXIT_OK, EXIT_TEMPFAIL
from ._main import main

__all__ = ["EXIT_CONFIG", "EXIT_DELIVERY", "EXIT_OK", "EXIT_TEMPFAIL", "main"]
