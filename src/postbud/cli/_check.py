"""``postbud check``: print ``diagnose()``'s steps as they come, and the fix of a failure."""

from __future__ import annotations

from collections.abc import Callable

from postbud._check import CheckStep, diagnose
from postbud._config import Settings

__all__ = ["run_checks"]


def _line(status: str, step: str, text: str) -> None:
    print(f"{status:<4} {step:<9} {text}", flush=True)


def _print(step: CheckStep) -> None:
    _line("ok" if step.ok else "FAIL", step.name, step.text)
    if step.fix:
        _line("", "", f"fix: {step.fix}")


def run_checks(load: Callable[[], Settings], send_to: str | None) -> int:
    """Run every step; 0 when all passed, 1 for a delivery problem, 2 for configuration."""
    report = diagnose(load, send_to, on_step=_print)
    if report.ok:
        print("All checks passed.")
    return report.exit_code
