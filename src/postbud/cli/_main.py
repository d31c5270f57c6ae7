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
import inspect
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from postbud._config import GMAIL_HOST, PORTS, Settings
from postbud._version import __version__
from postbud.errors import ConfigurationError, DeliveryError, InvalidMessageError, PostbudError

from ._common import (
    EXIT_CONFIG,
    EXIT_DELIVERY,
    EXIT_OK,
    OUTBOX_ACTIONS,
    Usage,
    one_line,
    option_of,
    say,
    settings_from,
)

__all__ = [
    "COMMAND_SETTINGS",
    "OUTBOX_ACTIONS",
    "build_parser",
    "main",
    "run_handled",
    "usage_error",
]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo()


def _send(args: argparse.Namespace) -> int:
    from ._send import send_command

    return send_command(args)


def _run(args: argparse.Namespace) -> int:
    from ._run import run_job

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:  # the only mistake that stops postbud run: there is no job to run
        raise Usage("postbud run needs a command after --, e.g. postbud run -- ./backup.sh")
    return run_job(args, command)  # bad settings are said, and the job runs all the same


def _check(args: argparse.Namespace) -> int:
    from ._check import run_checks

    # Only diagnoses: what earlier runs left in the spool stays as it is. A failed step
    # is a report, not an exception, so --debug is passed down for its traceback.
    return run_checks(lambda: settings_from(args), args.send, debug=bool(args.debug))


def _outbox(args: argparse.Namespace) -> int:
    from ._outbox import outbox_command

    return outbox_command(args)


def _auth(args: argparse.Namespace) -> int:
    from ._auth import auth_command

    return auth_command(args)


# -- the parser ------------------------------------------------------------------------------


EXIT_STATUS = (
    "Exit status: 0 ok, 1 delivery problem (the user must act), 2 usage or configuration "
    "mistake, 75 kept in the spool for a later try."
)
SETTINGS_NOTE = (
    "Options override their POSTBUD_* variables. Secrets (POSTBUD_APP_PASSWORD, "
    "POSTBUD_OAUTH_CLIENT_SECRET, POSTBUD_OAUTH_REFRESH_TOKEN, POSTBUD_STATE_PASSWORD) "
    "are read from the environment only, where ps and the shell's history do not show them."
)
#: Options people try for a secret, and the variable to set instead.
SECRET_OPTIONS = {
    "--app-password": "POSTBUD_APP_PASSWORD",
    "--password": "POSTBUD_APP_PASSWORD",
    "--oauth-client-secret": "POSTBUD_OAUTH_CLIENT_SECRET",
    "--oauth-refresh-token": "POSTBUD_OAUTH_REFRESH_TOKEN",
    "--state-password": "POSTBUD_STATE_PASSWORD",
}

# What each settings option is for: its metavar, its help and its default as shown; a
# default of None is read from Settings' signature (defaults live only there).
_SETTING_HELP: dict[str, tuple[str, str, str | None]] = {
    "username": ("ADDRESS", "the Gmail or Workspace account that logs in and sends", ""),
    "sender": ("ADDRESS", "the From address, if not the account (a 'Send mail as' alias)", ""),
    "oauth_token_file": (
        "FILE",
        "OAuth2 authorized-user JSON file, instead of an app password",
        "",
    ),
    "oauth_client_id": (
        "ID",
        "OAuth2 client id, with POSTBUD_OAUTH_CLIENT_SECRET and POSTBUD_OAUTH_REFRESH_TOKEN",
        "",
    ),
    "oauth_token_uri": ("URL", "token endpoint to use instead of Google's (tests, the demo)", ""),
    "service_account_file": ("FILE", "service account key JSON (Workspace delegation)", ""),
    "host": ("HOST", "SMTP server", GMAIL_HOST),
    "port": ("PORT", "SMTP port", f"{PORTS['ssl']} for ssl, {PORTS['starttls']} for starttls"),
    "security": (
        "",
        f"ssl: TLS from the first byte (Gmail's port {PORTS['ssl']}); starttls: plain, then "
        f"STARTTLS (Gmail's port {PORTS['starttls']})",
        "ssl, or what the port says",
    ),
    "timeout": ("SECONDS", "deadline of one delivery attempt", None),
    "ca_file": ("FILE", "PEM file of CA certificates to trust instead of the system's", ""),
    "spool": (
        "FILE",
        "the outbox database ('' keeps the queue in memory)",
        "$XDG_CACHE_HOME/postbud/outbox.sqlite",
    ),
    "state": (
        "URL",
        "where the processes of every machine share the daily count, the login pause and "
        "the hold: redis://host:6379/0 (rediss:// for TLS), its password in "
        "POSTBUD_STATE_PASSWORD, never in the URL",
        "the spool",
    ),
    "daily_limit": ("N", "recipients allowed in a rolling 24 h (Workspace: 2000)", None),
    "exit_timeout": ("SECONDS", "how long to wait for queued mail before exiting", None),
    "max_age": ("SECONDS", "how long a message is retried before it is a dead letter", None),
    "alert_tag": ("TAG", "put in front of the subject of failure reports, e.g. prod", ""),
}
_GROUPS = (
    (
        "account",
        (
            "username",
            "sender",
            "oauth_token_file",
            "oauth_client_id",
            "oauth_token_uri",
            "service_account_file",
        ),
    ),
    ("connection", ("host", "port", "security", "timeout", "ca_file")),
    ("spool and limits", ("spool", "state", "daily_limit", "exit_timeout", "max_age")),
    ("reports", ("alert_tag",)),
)
_LOGIN = (
    "username",
    "oauth_token_file",
    "oauth_client_id",
    "oauth_token_uri",
    "service_account_file",
    "host",
    "port",
    "security",
    "timeout",
    "ca_file",
)
#: The settings each command uses, so its help shows only those options.
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "send": (*_LOGIN, "sender", "spool", "state", "daily_limit", "exit_timeout", "max_age"),
    "run": (
        *_LOGIN,
        "sender",
        "spool",
        "state",
        "daily_limit",
        "exit_timeout",
        "max_age",
        "alert_tag",
    ),
    "check": (*_LOGIN, "sender", "spool", "state", "daily_limit"),
    # status, list and purge read the spool of an account (and the quota and gates from
    # the state); retry also logs in and sends (the messages keep the From they were
    # built with).
    "outbox": (*_LOGIN, "spool", "state", "daily_limit", "exit_timeout", "max_age"),
}

_EXAMPLES = {
    None: (
        "echo 'Backup done' | postbud send --to ops@example.com --subject 'Backup done'",
        "postbud run --to oncall@example.com -- /usr/local/bin/backup.sh",
        "postbud check --send me@example.com",
        "postbud help outbox",
    ),
    "demo": ("postbud demo",),
    "send": (
        "echo 'Backup done' | postbud send --to ops@example.com --subject 'Backup done'",
        "postbud send --to a@example.com --to b@example.com --subject Report \\\n"
        "      --html report.html --attach report.csv < summary.txt",
    ),
    "run": (
        "postbud run --to oncall@example.com -- /usr/local/bin/backup.sh --full",
        "postbud run --always --subject 'Nightly import' -- ./import.sh",
    ),
    "check": ("postbud check", "postbud check --send me@example.com"),
    "outbox": (
        "postbud outbox status",
        "postbud outbox list",
        "postbud outbox retry 17",
        "postbud outbox purge 17 18",
    ),
    "auth": (
        "postbud auth login --client-secrets client_secret.json",
        "postbud auth login --client-secrets client_secret.json --port 8765   # over ssh",
        "postbud auth status",
        "postbud auth revoke",
    ),
    "help": ("postbud help send",),
}
_AUTH_STATUS = (
    "Exit status: 0 ok, 1 the user must act (consent refused or not given in time, a "
    "token Google refuses), 2 usage or configuration mistake, 75 Google could not be "
    "reached."
)


def _examples(command: str | None, status: str) -> str:
    lines = _EXAMPLES[command]
    head = "example:" if len(lines) == 1 else "examples:"
    return "\n".join([head, *(f"  {line}" for line in lines)]) + f"\n\n{status}"


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps paragraphs as usual, but keeps the examples' lines as they are written and
    a bracket (``[env: POSTBUD_TIMEOUT]``) on one line."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        glued = re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", "\0"), text)
        return [line.replace("\0", " ") for line in super()._split_lines(glued, width)]

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        parts = []
        for part in text.split("\n\n"):
            kept = "\n  " in part  # an example block
            parts.append(
                textwrap.indent(part, indent) if kept else super()._fill_text(part, width, indent)
            )
        return "\n\n".join(parts)


class _Refused(argparse.Action):
    """A secret option (``--app-password``): refused with where the secret goes instead,
    never echoed (argparse's "unrecognized arguments" would print the secret)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        option = option_string or self.option_strings[0]
        variable = SECRET_OPTIONS.get(option, "POSTBUD_APP_PASSWORD")
        parser.exit(
            EXIT_CONFIG,
            f"{parser.prog}: error: {option} is not an option: secrets are read from the "
            f"environment only, where ps and the shell's history do not show them; set "
            f"{variable} instead.\n",
        )


def _refuse_secrets(parser: argparse.ArgumentParser) -> None:
    for option in SECRET_OPTIONS:
        parser.add_argument(
            option,
            action=_Refused,
            nargs="?",
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def _setting_help(name: str) -> str:
    """``--timeout``'s help: what it is, its default, the variable it overrides."""
    _, text, shown = _SETTING_HELP[name]
    if shown is None:
        default = inspect.signature(Settings.__init__).parameters[name].default
        shown = f"{default:g}" if isinstance(default, (int, float)) else str(default)
        if isinstance(default, float):
            shown += " s"
            if default >= 86400 and default % 86400 == 0:
                shown += f" = {default / 86400:g} days"
    default_part = f" [default: {shown}]" if shown else ""
    return f"{text}{default_part} [env: POSTBUD_{name.upper()}]"


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for title, members in _GROUPS:
        chosen = [name for name in members if name in names]
        if not chosen:
            continue
        group = parser.add_argument_group(title)
        for name in chosen:
            metavar = _SETTING_HELP[name][0]
            if name == "security":
                group.add_argument(
                    option_of(name),
                    dest=f"set_{name}",
                    type=str.lower,
                    choices=tuple(PORTS),
                    help=_setting_help(name),
                )
            else:
                group.add_argument(
                    option_of(name), dest=f"set_{name}", metavar=metavar, help=_setting_help(name)
                )


def build_parser() -> argparse.ArgumentParser:
    """The ``postbud`` parser: one sub-parser a command, each with only its options."""
    parser = argparse.ArgumentParser(
        prog="postbud",
        description="Send mail and error alerts through Gmail (app password or OAuth2). "
        "Settings come from POSTBUD_* environment variables; secrets never from arguments.",
        epilog=_examples(
            None,
            "'postbud COMMAND --help' shows a command's options. Exit status: 0 ok, 1 "
            "delivery problem (the user must act), 2 usage or configuration mistake, 75 kept "
            "in the spool for a later try; postbud run: the command's own status.",
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"postbud {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    _refuse_secrets(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str, status: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_examples(name, status),
            formatter_class=_HelpFormatter,
        )
        sub.set_defaults(parser=sub)
        if name in COMMAND_SETTINGS:
            # SUPPRESS: "postbud --debug send" must not be reset by the subcommand's default.
            sub.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,
                help="show tracebacks of errors",
            )
        _refuse_secrets(sub)  # every command: argparse would echo the secret back
        return sub

    demo = command(
        "demo",
        "send mail through an embedded fake Gmail (no account needed)",
        "Start a fake Gmail on 127.0.0.1, send with an app password over "
        "implicit TLS and over STARTTLS and with OAuth2 (XOAUTH2), show storm control, "
        "and print what the server received.",
        "Exit status: 0 ok.",
    )
    demo.set_defaults(handler=_demo)

    send = command(
        "send",
        "send one message now; the body comes from stdin",
        "Send one message now, its text body read from stdin. If Gmail cannot be reached "
        "(or refuses for now), the message is kept in the spool, postbud exits 75, and the "
        "next postbud command delivers it.",
        f"{SETTINGS_NOTE}\n\n{EXIT_STATUS}",
    )
    message = send.add_argument_group("message")
    message.add_argument(
        "--to", action="append", required=True, metavar="ADDRESS", help="recipient (repeatable)"
    )
    message.add_argument("--subject", required=True, help="the subject line")
    message.add_argument("--cc", action="append", metavar="ADDRESS", help="copy (repeatable)")
    message.add_argument(
        "--bcc", action="append", metavar="ADDRESS", help="blind copy (repeatable)"
    )
    message.add_argument("--reply-to", metavar="ADDRESS", help="where replies should go")
    message.add_argument("--html", metavar="FILE", help="an HTML body, next to the text")
    message.add_argument(
        "--attach", action="append", metavar="PATH", help="attach a file (repeatable)"
    )
    message.add_argument(
        "--priority",
        choices=("normal", "alert"),
        default="normal",
        help="queue order if the message is kept: alert goes first (default normal)",
    )
    _add_settings(send, COMMAND_SETTINGS["send"])
    send.set_defaults(handler=_send)

    run = command(
        "run",
        "run a command and mail its failure",
        "Run CMD with its output passed through unchanged. If it exits non-zero or is "
        "killed by a signal, mail the exit status, duration, host, command line (secrets "
        "masked) and the last lines of output. Exits with CMD's status (128+N for signal N).",
        f"{SETTINGS_NOTE}\n\nExit status: the command's own, always (128+N when signal N "
        "killed it; 127 when it could not be started; 2 when there is no command).",
    )
    report = run.add_argument_group("report")
    report.add_argument(
        "--to",
        action="append",
        metavar="ADDRESS",
        help="recipient (repeatable; default: the account itself)",
    )
    report.add_argument("--subject", help="subject, in place of the command line")
    report.add_argument("--always", action="store_true", help="mail on success too")
    report.add_argument(
        "--lines", type=int, default=100, metavar="N", help="lines of output to mail (default 100)"
    )
    run.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the command to run, and its arguments",
    )
    _add_settings(run, COMMAND_SETTINGS["run"])
    run.set_defaults(handler=_run)

    check = command(
        "check",
        "check the configuration step by step",
        "Walk the configuration: settings, DNS, TCP, the TLS certificate, EHLO, the "
        "login (app password, or a token refresh then XOAUTH2) and the daily quota. Each "
        "failure says what is wrong and how to fix it. Queued mail is not touched.",
        f"{SETTINGS_NOTE}\n\n{EXIT_STATUS.replace(', 75 kept in the spool for a later try', '')}",
    )
    check.add_argument("--send", metavar="TO", help="also send a test message to TO")
    _add_settings(check, COMMAND_SETTINGS["check"])
    check.set_defaults(handler=_check)

    outbox = command(
        "outbox",
        "show or manage the spool (queued mail and dead letters)",
        "status: counts, oldest message, next retry, quota used. list: every message "
        "with its attempts and last error. status and list only read: they send nothing "
        "and create no file. retry: put dead letters (all, or the IDs given) back in the "
        "queue and send them with what waits. purge: delete dead letters (all, or the IDs "
        "given).",
        f"{SETTINGS_NOTE}\n\n{EXIT_STATUS} An ID that is not in the spool exits 1.",
    )
    outbox.add_argument(
        "action",
        nargs="?",
        choices=OUTBOX_ACTIONS,
        help="what to do: " + ", ".join(OUTBOX_ACTIONS[:-1]) + " or " + OUTBOX_ACTIONS[-1],
    )
    outbox.add_argument(
        "ids",
        nargs="*",
        type=int,
        metavar="ID",
        help="message ids, as 'postbud outbox list' shows them (retry and purge only)",
    )
    _add_settings(outbox, COMMAND_SETTINGS["outbox"])
    outbox.set_defaults(handler=_outbox)

    _add_auth(command("auth", *_AUTH_TEXTS, _AUTH_STATUS))

    helper = command(
        "help",
        "show the help of a command",
        "Show the help of COMMAND, as 'postbud COMMAND --help' does.",
        "Exit status: 0 ok, 2 for a command that does not exist.",
    )
    helper.add_argument(
        "topic", nargs="?", metavar="COMMAND", choices=tuple(commands.choices), help="the command"
    )
    helper.set_defaults(handler=_help, commands=commands.choices, top=parser)
    return parser


_AUTH_TEXTS = (
    "get, check or revoke an OAuth2 token file (Gmail without an app password)",
    "login: Google's consent in a browser (installed-app flow with a loopback redirect "
    "and PKCE), then an authorized-user token file at mode 0600. It asks for the scopes "
    "https://mail.google.com/ (the only one Gmail's SMTP accepts) and 'openid email', to "
    "learn which address was authorised. status: the account, scopes, file mode and "
    "whether the refresh token works now (one refresh). revoke: end the token at Google "
    "and remove the file. The token file is --token-file, else POSTBUD_OAUTH_TOKEN_FILE, "
    "else $XDG_CONFIG_HOME/postbud/token.json (~/.config when unset).",
)


def _add_auth(auth: argparse.ArgumentParser) -> None:
    """``postbud auth login|status|revoke``, each action with its own options."""
    actions = auth.add_subparsers(
        dest="auth_action", metavar="ACTION", help="login, status or revoke"
    )

    def action(name: str, summary: str, examples: tuple[str, ...]) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog="examples:\n"
            + "\n".join(f"  {line}" for line in examples)
            + f"\n\n{_AUTH_STATUS}",
            formatter_class=_HelpFormatter,
        )
        sub.set_defaults(parser=sub)
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
        sub.add_argument(
            "--token-file",
            metavar="PATH",
            help="the token file (default: the file POSTBUD_OAUTH_TOKEN_FILE names, else "
            "$XDG_CONFIG_HOME/postbud/token.json)",
        )
        _refuse_secrets(sub)
        return sub

    login = action(
        "login",
        "authorise postbud in a browser and write the token file (asks for "
        "https://mail.google.com/ and 'openid email', to learn the address)",
        (
            "postbud auth login --client-secrets client_secret.json",
            "postbud auth login --client-secrets client_secret.json --port 8765",
            "postbud auth login --client-secrets client_secret.json --paste",
        ),
    )
    login.add_argument(
        "--client-secrets",
        required=True,
        metavar="FILE",
        help="client_secret.json of an OAuth client of type 'Desktop app' (Google Cloud "
        "console, APIs & Services, Credentials)",
    )
    login.add_argument("--force", action="store_true", help="replace an existing token file")
    login.add_argument(
        "--no-browser",
        action="store_true",
        help="print the URL instead of opening a browser (the default without a display)",
    )
    login.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="the loopback port Google redirects to, for an ssh -L forward (printed) "
        "[default: a free one]",
    )
    login.add_argument(
        "--paste",
        action="store_true",
        help="no redirect listener: paste the address the browser was sent to",
    )
    login.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the browser's answer [default: 300 s]",
    )
    login.add_argument(
        "--send-test",
        metavar="TO",
        help="then send a test message to TO (nothing is sent without it; the connection "
        "settings come from POSTBUD_*)",
    )
    for name, summary in (
        ("status", "which account, scopes, file mode; whether the refresh token works now"),
        ("revoke", "revoke the token at Google, then remove the token file"),
    ):
        sub = action(name, summary, (f"postbud auth {name}",))
        sub.add_argument(
            "--oauth-token-uri",
            dest="set_oauth_token_uri",
            metavar="URL",
            help="token endpoint to use instead of Google's; revoke and tokeninfo are its "
            "siblings (tests) [env: POSTBUD_OAUTH_TOKEN_URI]",
        )
    auth.set_defaults(handler=_auth)


#: The actions of ``postbud outbox``.


def _help(args: argparse.Namespace) -> int:
    parsers: Mapping[str, argparse.ArgumentParser] = args.commands
    target = parsers[args.topic] if args.topic else args.top
    target.print_help()
    return EXIT_OK


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """Say a usage mistake as argparse does (the usage, then one line), on stderr: 2."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


class _LineFormatter(logging.Formatter):
    """postbud's own warnings as one line each: "postbud: " once, Gmail's replies joined,
    a traceback only with ``--debug``."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        text = f"postbud: {one_line(record.getMessage())}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and record.exc_info is not None:
            if self.debug:
                text += "\n" + self.formatException(record.exc_info)
            else:
                text += f" ({type(exc).__name__}: {exc}; --debug shows the traceback)"
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse lets the top parser refuse them, with its own usage: the
            # command's usage says what the command takes.
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        job = _job_of(sys.argv[1:] if argv is None else list(argv))
        if exc.code != 2 or not job:
            raise
        # postbud run with options argparse refused (argparse said why, above): the
        # job runs all the same; only its failure cannot be mailed.
        from ._run import run_command

        problem = "the options before -- could not be read (see the error above)"
        say(f"the job runs, but its failure cannot be mailed: {problem}")
        return run_command(None, job, None, None, False, 100, problem=problem)
    own = logging.getLogger("postbud")
    stream = logging.StreamHandler()  # postbud's warnings, in the one-line style
    stream.setFormatter(_LineFormatter(bool(getattr(args, "debug", False))))
    if not own.handlers:
        own.addHandler(stream)
    try:
        return _dispatch(parser, args)
    finally:
        own.removeHandler(stream)


def _job_of(argv: list[str]) -> list[str]:
    """The job of a ``postbud [--debug] run ... -- JOB`` command line, else []."""
    words = [w for w in argv[: argv.index("--")] if not w.startswith("-")] if "--" in argv else []
    if not words or words[0] != "run":
        return []
    return argv[argv.index("--") + 1 :]


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        names = [name for name in _EXAMPLES if name is not None]
        return usage_error(
            parser,
            "a command is required: "
            + ", ".join(names[:-1])
            + f" or {names[-1]} ('postbud --help' says what each does)",
        )
    if args.command == "outbox" and args.action is None:
        return usage_error(
            args.parser,
            "an action is required: "
            + ", ".join(OUTBOX_ACTIONS[:-1])
            + f" or {OUTBOX_ACTIONS[-1]} ('postbud outbox --help' says what each does)",
        )
    if args.command == "auth" and args.auth_action is None:
        return usage_error(
            args.parser,
            "an action is required: login, status or revoke ('postbud auth --help' says "
            "what each does)",
        )
    return run_handled(lambda: handler(args), debug=bool(args.debug))


def run_handled(call: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command; a mistake or an error becomes its ``postbud: ...`` line and exit
    status (a traceback only with ``debug``)."""
    try:
        return call()
    except Usage as exc:
        say(str(exc))
        return EXIT_CONFIG
    except PostbudError as exc:
        if debug:
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
        if debug:
            raise
        say(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_DELIVERY
