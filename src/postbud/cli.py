"""The ``postbud`` command line (also ``python -m postbud``).

Every command prints one readable line per error (a traceback only with ``--debug``)
and exits 0 when all went well, 1 for a delivery problem, 2 for a usage or
configuration mistake, and 75 (EX_TEMPFAIL) when mail was kept for a later try.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import ConfigurationError, DeliveryError, PostbudError

__all__ = ["EXIT_CONFIG", "EXIT_DELIVERY", "EXIT_OK", "EXIT_TEMPFAIL", "main"]

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_CONFIG = 2
EXIT_TEMPFAIL = 75


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postbud",
        description="Send mail and error alerts through Gmail (app password or OAuth2). "
        "Settings come from POSTBUD_* environment variables; secrets never from arguments.",
    )
    parser.add_argument("--version", action="version", version=f"postbud {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="send mail through an embedded fake Gmail (no account needed)",
        description="Start a fake Gmail on 127.0.0.1, send with an app password over "
        "implicit TLS and over STARTTLS and with OAuth2 (XOAUTH2), and print what the "
        "server received.",
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except PostbudError as exc:
        if args.debug:
            raise
        print(f"postbud: {exc}", file=sys.stderr)
        if isinstance(exc, ConfigurationError):
            return EXIT_CONFIG
        if isinstance(exc, DeliveryError):
            return EXIT_DELIVERY
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
