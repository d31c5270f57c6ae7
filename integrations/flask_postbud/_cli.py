"""``flask postbud ...``: the app's postbud commands, through Flask's click group.

``check``, ``send-test`` and ``outbox`` are ``postbud check``, a test mail and ``postbud
outbox`` with the app's own settings (its ``PostbudState``: ``POSTBUD_*``, ``MAIL_*``, the
environment), so a doubt about a deployed app is settled with the app's config, not with
a shell that happens to hold the same variables. The walk is ``postbud.diagnose`` and the
outbox is ``postbud.cli.outbox``, run in this process: the words and the rules are the
command line's. So are the exit status (0 done, 1 a delivery problem the user must fix,
2 a usage or configuration mistake, 75 mail kept for a later try) and the messages (one
line on stderr, ``postbud: ...``, no traceback; a config mistake names the key).

Suppression (``POSTBUD_SUPPRESS_SEND``, ``MAIL_SUPPRESS_SEND``, ``TESTING``) holds here
as in the app: ``send-test`` and ``outbox retry`` send nothing, say so, and exit 0, as
the app's own ``send`` succeeds without sending (a test suite that runs the command
under ``TESTING`` passes, and ``record_messages`` sees the test mail). ``check`` still
walks the connection (it sends no mail) and says that the app's mail is suppressed.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NoReturn

import click
from flask import Flask, current_app
from flask.cli import AppGroup

import postbud
import postbud.cli

from ._settings import FIELDS, SUPPRESS_KEY
from ._state import state_of

if TYPE_CHECKING:
    from ._extension import Postbud

__all__ = ["postbud_group"]

postbud_group = AppGroup(
    "postbud",
    help=(
        "postbud with this app's settings: check them, send a test mail, see the outbox. "
        "Exit status: 0 done, 1 a delivery problem to fix, 2 a usage or configuration "
        "mistake, 75 mail kept for a later try."
    ),
)

_OUTBOX_ACTIONS = ("status", "list", "retry", "purge")
# The core's hints name settings in Python's spelling ("check security='ssl'"); here the
# app's key says it (POSTBUD_* wins over MAIL_* and the environment, so the fix works).
_PYTHON_SETTING = re.compile(rf"(?<![\w.])(?P<name>{'|'.join(FIELDS)})=(?=\S)")
# ... and tell the user to run "postbud outbox retry", which would read the shell's
# POSTBUD_* variables, not the app's config: here it is "flask postbud outbox retry".
_OUTBOX_ADVICE = re.compile(r"(?<![\w-])(?<!flask )postbud outbox (?=status|list|retry|purge)")


def _fail(message: str, exit_code: int) -> NoReturn:
    """End the command with ``postbud: <message>`` on stderr and ``exit_code``.

    click's own ``ClickException`` says ``Error:`` and exits 1; the command line's
    convention is ``postbud:`` and its own status.
    """
    click.echo(f"postbud: {_as_flask(message)}", err=True)
    raise click.exceptions.Exit(exit_code)


# -- check ------------------------------------------------------------------------------


@postbud_group.command("check")
@click.option("--send", "send_to", metavar="TO", help="Also send a test message to TO.")
@click.option("--debug", is_flag=True, help="Print the traceback of a failed step (stderr).")
def check_command(send_to: str | None, debug: bool) -> None:
    """Check the app's mail settings step by step, as 'postbud check' does.

    Settings, DNS, TCP, the TLS certificate, EHLO, the login and the daily quota, one
    line each; a failed step says how to fix it. Nothing is sent unless --send TO (and
    not under suppression); queued mail is not touched.

    Exit status: 0 all passed, 1 a delivery problem (the fix is shown), 2 a
    configuration mistake (the key is named).
    """
    app = _app()
    state = state_of(app)
    held = _suppressed_by(app)
    if held is not None:
        _line("warn", "suppress", f"the app's mail does not leave the process ({held}).")
    report = postbud.diagnose(
        lambda: state.settings(app),
        None if held is not None else send_to,
        on_step=lambda step: _show(step, debug),
    )
    if not report.ok:
        failed = report.failure or report.steps[-1]
        _fail(failed.fix or failed.text, report.exit_code)
    if send_to and held is not None:
        _line("warn", "send", f"nothing was sent to {send_to}: sending is suppressed.")
    click.secho("All checks passed.", fg="green")


def _show(step: postbud.CheckStep, debug: bool) -> None:
    status = "FAIL" if not step.ok else "warn" if step.warning else "ok"
    _line(status, step.name, step.text)
    if step.fix:
        _line("", "", f"fix: {step.fix}")
    if debug and step.error is not None:
        click.echo("".join(traceback.format_exception(step.error)), err=True, nl=False)


def _line(status: str, name: str, text: str) -> None:
    color = {"FAIL": "red", "warn": "yellow"}.get(status)
    click.secho(f"{status:<4} {name:<9} {_as_flask(text)}", fg=color)


# -- send-test --------------------------------------------------------------------------


@postbud_group.command("send-test")
@click.option("--to", "to", required=True, metavar="ADDRESS", help="Where to send it.")
def send_test_command(to: str) -> None:
    """Send one short test mail with the app's settings, now, and say where it went.

    It goes the way the app's own mail goes (its account, sender and connection), in one
    attempt: nothing is kept for a later try, since a test mail that arrives hours
    later tests nothing.

    Under suppression (POSTBUD_SUPPRESS_SEND, MAIL_SUPPRESS_SEND or TESTING) the mail is
    only built, as the app's mail is: nothing is sent, a line on stderr says so, and
    the exit status is 0.

    Exit status: 0 sent (or suppressed), 1 Gmail refused it or could not be reached,
    2 a configuration mistake or a bad address.
    """
    app = _app()
    extension: Postbud = state_of(app).extension
    held = _suppressed_by(app)
    subject = f"Test mail from the Flask app {app.name}"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"This is a test mail from the Flask app {app.name} on {socket.gethostname()}, "
        f"sent by 'flask postbud send-test' at {stamp}.\n"
        "If you can read it, the app's mail settings work.\n"
    )
    with _failures():
        result = extension.send(to, subject, text, app=app)
    if held is not None:
        click.echo(
            f"postbud: nothing was sent to {to}: sending is suppressed for this app "
            f"({held}); set {SUPPRESS_KEY} = False to send.",
            err=True,
        )
        return
    with _failures():
        settings = state_of(app).settings(app)
    where = f"{settings.host}:{settings.port} ({settings.security})"
    click.echo(
        f"Sent the test mail to {to} from {settings.username}: {where} accepted it "
        f"as {result.message_id}."
    )


# -- outbox -----------------------------------------------------------------------------


@postbud_group.command("outbox")
@click.argument("action", type=click.Choice(_OUTBOX_ACTIONS), metavar="ACTION")
@click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
def outbox_command(action: str, ids: tuple[int, ...]) -> None:
    """Show or manage the app's spool, as 'postbud outbox' does.

    \b
    status  counts, the oldest message, the next retry, the quota used
    list    every queued or dead message with its attempts and last error
    retry   put dead letters (all, or the IDs given) back in the queue and send
            them with what waits (not under suppression: nothing is sent then)
    purge   delete dead letters (all, or the IDs given)

    status and list only read: they send nothing, change nothing and create no file.
    An ID that is not in the spool exits 1 and nothing is done.

    Exit status: 0 done, 1 an unknown ID or a retry that failed again, 2 a usage or
    configuration mistake, 75 mail still waits for a retry.
    """
    app = _app()
    if action == "retry":
        held = _suppressed_by(app)
        if held is not None:
            click.echo(
                f"postbud: nothing was retried: sending is suppressed for this app "
                f"({held}); set {SUPPRESS_KEY} = False to send.",
                err=True,
            )
            return
    with _failures():
        settings = state_of(app).settings(app)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = postbud.cli.outbox(action, ids, settings=settings)
    # status's advice is in the app's words; list's rows are kept as they are (a subject
    # is the user's text, not advice).
    click.echo(_as_flask(out.getvalue()) if action == "status" else out.getvalue(), nl=False)
    click.echo(_as_flask(err.getvalue()), nl=False, err=True)  # its own "postbud: ..." lines
    if status:
        raise click.exceptions.Exit(status)


# -- helpers ----------------------------------------------------------------------------


def _app() -> Flask:
    """The app the command runs for (AppGroup pushed its context)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """A postbud error as the command line says it: its line, exit 2 for a mistake in
    the config or the arguments (the key or option named), 1 for a delivery problem."""
    try:
        yield
    except (postbud.ConfigurationError, postbud.InvalidMessageError) as exc:
        message = _one_line(exc)
        if isinstance(exc, postbud.InvalidMessageError) and message.startswith("to: "):
            message = "--to" + message[2:]  # the core names the argument "to"
        _fail(message, postbud.cli.EXIT_CONFIG)
    except postbud.DeliveryError as exc:
        _fail(_one_line(exc), postbud.cli.EXIT_DELIVERY)


def _suppressed_by(app: Flask) -> str | None:
    """What suppresses the app's mail (``"TESTING is True"``), or None when it is sent.

    Raises:
        click.exceptions.Exit: A suppression key that is not True or False (exit 2).
    """
    with _failures():
        if not state_of(app).suppressed(app):
            return None
    # The order of _settings.suppressed: the first key set decides.
    for key in (SUPPRESS_KEY, "MAIL_SUPPRESS_SEND"):
        if app.config.get(key) is not None:
            return f"{key} is True"
    return "TESTING is True"


def _as_flask(text: str) -> str:
    """A core text in the app's words: ``security='ssl'`` becomes ``POSTBUD_SECURITY='ssl'``
    and ``'postbud outbox retry'`` becomes ``'flask postbud outbox retry'``."""
    text = _PYTHON_SETTING.sub(lambda m: f"POSTBUD_{m['name'].upper()}=", text)
    return _OUTBOX_ADVICE.sub("flask postbud outbox ", text)


def _one_line(exc: BaseException) -> str:
    # "postbud: " is said once, by _fail().
    return " ".join(str(exc).split()).removeprefix("postbud: ")
