"""The ``postbud`` parser and dispatch: one line per error, the exit codes of DESIGN.md.

Every command reads its settings from ``POSTBUD_*`` environment variables (options
override the non-secret ones; secrets are never taken from arguments), prints one
readable line per error (a traceback only with ``--debug``) and exits 0 when all went
well, 1 for a delivery problem, 2 for a usage or configuration mistake, and 75
(EX_TEMPFAIL) when mail was kept in the spool for a later try. The commands live in
their own modules, imported when used.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from postbud._address import parse_addresses
from postbud._version import __version__
from postbud.errors import ConfigurationError, DeliveryError, InvalidMessageError, PostbudError

from ._common import (
    EXIT_CONFIG,
    EXIT_DELIVERY,
    OPTION_SETTINGS,
    Usage,
    mailer_from,
    say,
    settings_from,
)

__all__ = ["build_parser", "main"]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo()


def _send(args: argparse.Namespace) -> int:
    from ._send import send_command

    return send_command(args)


def _run(args: argparse.Namespace) -> int:
    from ._run import run_command

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise Usage("postbud run needs a command after --, e.g. postbud run -- ./backup.sh")
    for address in args.to or ():  # checked before the job runs, not after it
        parse_addresses(address)
    mailer = mailer_from(args)
    try:
        return run_command(mailer, command, args.to, args.subject, args.always, args.lines)
    finally:
        mailer.close(timeout=0)


def _check(args: argparse.Namespace) -> int:
    from ._check import run_checks

    # Only diagnoses: what earlier runs left in the spool stays as it is.
    return run_checks(lambda: settings_from(args), args.send)


def _outbox(args: argparse.Namespace) -> int:
    from ._outbox import outbox_command

    return outbox_command(args)


# -- the parser ------------------------------------------------------------------------------


EPILOG = (
    "Exit status: 0 ok, 1 delivery problem, 2 usage or configuration mistake, 75 kept "
    "in the spool for a later try (postbud run: the command's own status)."
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: "postbud --debug send" must not be reset by the subcommand's default.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    group = common.add_argument_group(
        "settings",
        "Each overrides its POSTBUD_* variable (--ca-file: POSTBUD_CA_FILE). Secrets "
        "(POSTBUD_APP_PASSWORD, POSTBUD_OAUTH_CLIENT_SECRET, POSTBUD_OAUTH_REFRESH_TOKEN) "
        "are read from the environment only.",
    )
    for name in OPTION_SETTINGS:
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"set_{name}",
            metavar=name.upper(),
            help=f"overrides POSTBUD_{name.upper()}",
        )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="postbud",
        description="Send mail and error alerts through Gmail (app password or OAuth2). "
        "Settings come from POSTBUD_* environment variables; secrets never from arguments.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"postbud {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, parents=[common], epilog=EPILOG
        )

    demo = commands.add_parser(
        "demo",
        help="send mail through an embedded fake Gmail (no account needed)",
        description="Start a fake Gmail on 127.0.0.1, send with an app password over "
        "implicit TLS and over STARTTLS and with OAuth2 (XOAUTH2), show storm control, "
        "and print what the server received.",
    )
    demo.set_defaults(handler=_demo)

    send = command(
        "send",
        "send one message now; the body comes from stdin",
        "Send one message now, its text body read from stdin. If Gmail cannot be reached "
        "(or refuses for now), the message is kept in the spool, postbud exits 75, and the "
        "next postbud command delivers it.",
    )
    send.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    send.add_argument("--subject", required=True)
    send.add_argument("--cc", action="append", help="copy recipient (repeatable)")
    send.add_argument("--bcc", action="append", help="blind copy recipient (repeatable)")
    send.add_argument("--reply-to", help="where replies should go")
    send.add_argument("--html", metavar="FILE", help="an HTML body, next to the text")
    send.add_argument("--attach", action="append", metavar="PATH", help="attach a file")
    send.add_argument(
        "--priority", choices=("normal", "alert"), default="normal", help="queue order if kept"
    )
    send.set_defaults(handler=_send)

    run = command(
        "run",
        "run a command and mail its failure",
        "Run CMD with its output passed through unchanged. If it exits non-zero or is "
        "killed by a signal, mail the exit status, duration, host, command line (secrets "
        "masked) and the last lines of output. Exits with CMD's status (128+N for signal N).",
    )
    run.add_argument("--to", action="append", help="recipient (default: the account itself)")
    run.add_argument("--subject", help="subject prefix (default: the command line)")
    run.add_argument("--always", action="store_true", help="mail on success too")
    run.add_argument("--lines", type=int, default=100, help="lines of output to mail (100)")
    run.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run"
    )
    run.set_defaults(handler=_run)

    check = command(
        "check",
        "check the configuration step by step",
        "Walk the configuration: settings, DNS, TCP, the TLS certificate, EHLO, the "
        "login (app password, or a token refresh then XOAUTH2) and the daily quota. Each "
        "failure says what is wrong and how to fix it.",
    )
    check.add_argument("--send", metavar="TO", help="also send a test message to TO")
    check.set_defaults(handler=_check)

    outbox = command(
        "outbox",
        "show or manage the spool (queued mail and dead letters)",
        "status: counts, oldest message, next retry, quota used. list: every message "
        "with its last error. retry: put dead letters (all, or the IDS given) back in the "
        "queue and send them. purge: delete dead letters (all, or the IDS given).",
    )
    outbox.add_argument("action", choices=("status", "list", "retry", "purge"))
    outbox.add_argument("ids", nargs="*", type=int, metavar="ID", help="row ids (from list)")
    outbox.set_defaults(handler=_outbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    own = logging.getLogger("postbud")
    stream = logging.StreamHandler()  # postbud's warnings, in the one-line style
    stream.setFormatter(logging.Formatter("postbud: %(message)s"))
    if not own.handlers:
        own.addHandler(stream)
    try:
        return _dispatch(parser, args)
    finally:
        own.removeHandler(stream)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except Usage as exc:
        say(str(exc))
        return EXIT_CONFIG
    except PostbudError as exc:
        if args.debug:
            raise
        say(str(exc))  # a delivery error's text ends with its hint
        if isinstance(exc, (ConfigurationError, InvalidMessageError)):
            return EXIT_CONFIG
        if isinstance(exc, DeliveryError):
            return EXIT_DELIVERY
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, or something we did not foresee: still one line
        if args.debug:
            raise
        say(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_DELIVERY
