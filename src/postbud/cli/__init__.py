"""The ``postbud`` command line (also ``python -m postbud``): ``postbud.cli:main``.

One module per command (``_send``, ``_run``, ``_check``, ``_outbox``, ``_demo``), the
parser and dispatch in ``_main``, what they share in ``_common``.
"""

from __future__ import annotations

from collections.abc import Sequence

from postbud._config import Settings

from ._common import EXIT_CONFIG, EXIT_DELIVERY, EXIT_OK, EXIT_TEMPFAIL
from ._main import main, run_handled

__all__ = ["EXIT_CONFIG", "EXIT_DELIVERY", "EXIT_OK", "EXIT_TEMPFAIL", "main", "outbox"]


def outbox(action: str, ids: Sequence[int] = (), *, settings: Settings) -> int:
    """``postbud outbox ACTION [ID...]`` in this process, with ``settings``.

    For a framework's own command (``manage.py postbud_outbox``, ``flask postbud
    outbox``): the same words and rules as the command line. Results go to stdout and
    ``postbud: ...`` lines to stderr (``contextlib.redirect_stdout`` captures them);
    returns the exit status (0, 1 an id not in the spool or a failed retry, 2 a
    mistake, 75 mail still waiting). ``status`` and ``list`` only read (they send
    nothing and create no file), ``purge`` deletes dead letters only, ``retry`` puts
    dead letters back in the queue and sends them with what waits.
    """
    from ._outbox import run_outbox

    wanted = [int(key) for key in ids] or None
    return run_handled(lambda: run_outbox(action, wanted, settings))
