"""What every command shares: exit codes, one-line messages, settings and the Mailer.

Messages follow the conventions of git, pip and curl: one line on stderr that starts
with ``postbud:`` once (not ``postbud: postbud gave up``), with Gmail's multi-line
replies joined, and errors that name a setting the way the user gave it: ``--port`` for
an option, ``POSTBUD_PORT`` for the environment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from postbud._config import PORTS, Settings
from postbud._convert import mask_url
from postbud._mailer import Mailer
from postbud.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DELIVERY",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "OPTION_SETTINGS",
    "OUTBOX_ACTIONS",
    "Usage",
    "deliver_left",
    "mailer_from",
    "one_line",
    "option_of",
    "require_extras",
    "say",
    "settings_from",
    "settings_from_with",
]

EXIT_OK = 0
EXIT_DELIVERY = 1
EXIT_CONFIG = 2
EXIT_TEMPFAIL = 75
#: What ``postbud outbox`` does.
OUTBOX_ACTIONS = ("status", "list", "retry", "purge")

#: Settings an option may set (``--ca-file``); secrets come from the environment only.
OPTION_SETTINGS = (
    "username",
    "sender",
    "host",
    "port",
    "security",
    "timeout",
    "ca_file",
    "spool",
    "state",
    "oauth_token_file",
    "oauth_token_uri",
    "oauth_client_id",
    "service_account_file",
    "daily_limit",
    "exit_timeout",
    "max_age",
    "alert_tag",
)

# "postbud: " is said once, by say() and the log formatter; messages of the core often
# start with "postbud ..." themselves ("postbud gave up on ...").
_OWN_NAME = re.compile(r"^postbud(?::\s+|\s+(?=[a-z]))")
_OWN_POSSESSIVE = re.compile(r"^postbud's\s+")
# Gmail's multi-line replies: each line after the first repeats the enhanced code
# ("553-5.1.3 ...\r\n553-5.1.3 information, go to"; smtplib keeps "5.1.3 ..."), and the
# last one ends with a session id ("3e8e1473 - gsmtp") that helps nobody reading it.
_CONTINUED = re.compile(r"[ \t]*(?:\r\n|\r|\n)\s*(?:[245]\.\d{1,3}\.\d{1,3}\s+)?")
_SESSION = re.compile(r"\s+\S+ - gsmtp(?=\W|$)")


#: A setting in Python's spelling inside a hint: ``security='ssl'``, ``port=465``.
_PYTHON_SETTING = re.compile(
    r"\b(?P<name>security|port|host|timeout|ca_file|spool|username|sender)"
    r"=(?P<q>'?)(?P<value>[^'\s,;)]+)(?P=q)"
)


def as_options(text: str) -> str:
    """A library hint in the command line's words: ``check security='ssl'`` becomes
    ``check --security ssl`` (the core's texts are written for Python callers)."""
    return _PYTHON_SETTING.sub(lambda m: f"{option_of(m['name'])} {m['value']}", text)


def one_line(message: str) -> str:
    """``message`` as one line, without a leading "postbud" that ``say`` adds again,
    settings named as options."""
    text = message.strip()
    text = _OWN_POSSESSIVE.sub("the ", _OWN_NAME.sub("", text))
    return as_options(_SESSION.sub("", _CONTINUED.sub(" ", text)))


def say(message: str) -> None:
    """One line for the user, on stderr (stdout is for results)."""
    print(f"postbud: {one_line(message)}", file=sys.stderr, flush=True)


def option_of(name: str) -> str:
    """The option that sets ``name``: ``--ca-file`` for ``ca_file``."""
    return "--" + name.replace("_", "-")


def settings_from(args: argparse.Namespace) -> Settings:
    """``Settings`` from ``POSTBUD_*``, with the options given on the command line."""
    return settings_from_with(args)


def settings_from_with(args: argparse.Namespace, **extra: Any) -> Settings:
    """``settings_from`` with ``extra`` keyword settings (not options) on top.

    Options override their variables (``Settings.from_env``'s overrides, where a lone
    ``--port 587`` or ``--security`` carries the other along). A mistake is said the
    way the user gave the value: ``--timeout must be a number`` for an option,
    ``POSTBUD_TIMEOUT must be a number`` for the environment.
    """
    given = {
        name: getattr(args, f"set_{name}")
        for name in OPTION_SETTINGS
        if getattr(args, f"set_{name}", None) is not None
    }
    _check_endpoint(given, os.environ)
    _check_state(given.get("state"))
    try:
        return Settings.from_env(**given, **extra)
    except ConfigurationError as exc:
        exc.description = _as_typed(exc.description, given)
        exc.args = (exc.description,)
        raise


def _check_endpoint(given: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """Refuse Gmail's port of one mode with the other mode, given at one level.

    ``Settings`` says the same in its own vocabulary (``security='ssl'``); on the
    command line the fix is an option, or a variable when both came from there. Given
    at different levels they never clash: a lone option carries the other value along.
    """
    options = "port" in given or "security" in given
    if options:
        port, security = given.get("port"), given.get("security")
    else:
        port, security = environ.get("POSTBUD_PORT"), environ.get("POSTBUD_SECURITY")

    def spell(name: str, value: object) -> str:
        return f"{option_of(name)} {value}" if options else f"POSTBUD_{name.upper()}={value}"

    verb = "use" if options else "set"
    if not port or not security:
        return
    port, security = port.strip(), security.strip()
    mode = security.lower()
    try:
        number = int(port)
    except ValueError:
        return  # Settings says what is wrong with the value itself
    if mode not in PORTS or number == PORTS[mode] or number not in PORTS.values():
        return
    other = "starttls" if mode == "ssl" else "ssl"
    ssl, starttls = (f"{spell('security', m)} with {spell('port', PORTS[m])}" for m in PORTS)
    raise ConfigurationError(
        f"{spell('port', port)} and {spell('security', security)} contradict each other "
        f"({number} is Gmail's {other.upper()} port): {verb} {ssl}, or {starttls}; "
        "either alone is enough, the other follows."
    )


def _check_state(url: str | None) -> None:
    """Refuse ``--state`` with a password in it: arguments are what ps and the shell's
    history show (the URL is said with the password starred)."""
    if not url:
        return
    try:
        password = urllib.parse.urlsplit(url.strip()).password
    except ValueError:
        return  # Settings says what is wrong with the URL itself
    if password:
        raise ConfigurationError(
            f"--state {mask_url(url.strip())!r} holds a password, which ps and the shell's "
            "history show: set POSTBUD_STATE_PASSWORD and give --state without it, such "
            "as --state redis://host:6379/0."
        )


def _as_typed(message: str, given: Iterable[str]) -> str:
    """``message`` of ``Settings`` with each setting that came from an option named as
    that option (``Settings`` names overrides as keyword arguments: ``timeout``)."""
    for name in given:
        option = option_of(name)
        if message.startswith(name + " "):
            message = option + message[len(name) :]
        if "_" in name:  # elsewhere only names no sentence uses as a word ("ca_file")
            message = re.sub(rf"(?<![\w/.'\"-]){name}(?![\w/-])", option, message)
    return message


def mailer_from(
    args: argparse.Namespace, *, drain: bool = True, clear_pauses: bool = False
) -> Mailer:
    """The Mailer for a command; first retries what an earlier run left in the spool
    (behind the daily-limit hold, the login pause and the connection backoff, unless
    ``clear_pauses``: ``postbud outbox retry``, the user fixed something)."""
    mailer = Mailer(settings_from(args))
    if drain:
        deliver_left(mailer, clear_pauses=clear_pauses)
    return mailer


def deliver_left(mailer: Mailer, *, clear_pauses: bool = False) -> None:
    """Retry the account's rows an earlier run left in the spool, and say how it went."""
    before = mailer.stats()
    pending = mailer.outbox.retry_pending(clear_pauses=clear_pauses)
    if not pending:
        return
    mailer.flush(mailer.settings.exit_timeout)
    after = mailer.stats()
    sent = after["sent"] - before["sent"]  # what Gmail accepted, nothing else
    dead = after["dead"] - before["dead"]
    left = mailer.outbox.queued()
    line = f"{sent} of {pending} message(s) left in the spool by an earlier run went out"
    if dead:
        line += f"; {dead} failed for good (see 'postbud outbox list')"
    if left:
        line += f"; {left} still wait"
        waits = mailer.outbox.waits()
        line += f" ({mailer.outbox.gates.describe(waits[1])})" if waits else " for a retry"
    say(line + ".")


class Usage(Exception):
    """A usage mistake: one line, exit 2."""


def require_extras(what: str, extras: Mapping[str, Mapping[str, str]]) -> None:
    """Raise one ``MissingDependencyError`` naming every missing package and extra,
    with the one pip command that installs them all (exit status 2, as any).

    ``extras`` maps an extra to its modules and the package that brings each one.
    """
    missing: dict[str, list[str]] = {}
    for extra, modules in extras.items():
        for module, package in modules.items():
            try:
                importlib.import_module(module)
            except ImportError:
                missing.setdefault(extra, []).append(package)
    if missing:
        packages = [p for found in missing.values() for p in found]
        raise MissingDependencyError(
            f"{what} needs the {' and '.join(missing)} extra{'s' * (len(missing) > 1)} "
            f"({', '.join(packages)} not installed): pip install 'postbud[{','.join(missing)}]'",
            package=packages[0],
        )
