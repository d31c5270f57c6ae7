"""``postbud check``: print ``diagnose()``'s steps as they come, and the fix of a failure.

With ``--debug`` a failed step is followed by the traceback of the exception behind it
(on stderr, like every command's ``--debug``); without it the check prints no traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from postbud._check import CheckStep, diagnose
from postbud._config import Settings

from ._common import as_options

__all__ = ["run_checks"]


def _line(status: str, step: str, text: str) -> None:
    print(f"{status:<4} {step:<9} {as_options(text)}", flush=True)


def _printer(debug: bool) -> Callable[[CheckStep], None]:
    def show(step: CheckStep) -> None:
        status = "FAIL" if not step.ok else "warn" if step.warning else "ok"
        _line(status, step.name, step.text)
        if step.fix:
            _line("", "", f"fix: {step.fix}")
        if debug and step.error is not None:
            traceback.print_exception(step.error, file=sys.stderr)
            sys.stderr.flush()

    return show


def run_checks(load: Callable[[], Settings], send_to: str | None, *, debug: bool = False) -> int:
    """Run every step; 0 when all passed, 1 for a delivery problem, 2 for configuration.

    ``debug``: print the traceback of a failed step's exception.
    """
    report = diagnose(load, send_to, on_step=_printer(debug))
    if report.ok:
        print("All checks passed.")
    return report.exit_code
