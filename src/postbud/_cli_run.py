"""``postbud run -- CMD``: run a job, pass its output through, mail its failure.

The child's stdout and stderr go to ours unchanged (byte for byte, as they come), and
the last lines of both are kept for the mail. SIGINT and SIGTERM sent to postbud are
passed on to the child; postbud exits with the child's status (128+N for signal N),
whether or not the mail could be sent, so a cron job or a CI step keeps its meaning.
If Gmail cannot be reached the alert stays in the spool and the next postbud command
sends it.
"""

from __future__ import annotations

import collections
import getpass
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from ._alert_record import mask_argv, mask_text
from ._alert_render import html_page, html_pre, html_table, one_line
from ._mailer import Mailer
from .errors import DeliveryError

__all__ = ["run_command"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class _Tail:
    """The last ``size`` lines of the child's stdout and stderr, as they arrive."""

    def __init__(self, size: int) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=max(0, size))
        self._lock = threading.Lock()

    def pump(self, source: IO[bytes], sink: IO[bytes]) -> None:
        partial = b""
        while True:
            chunk = os.read(source.fileno(), 65536)
            if not chunk:
                break
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):  # our own stdout went away: keep collecting
                pass
            parts = (partial + chunk).split(b"\n")
            partial = parts.pop()
            with self._lock:
                self.lines.extend(p.decode("utf-8", "replace").rstrip("\r") for p in parts)
        if partial:
            with self._lock:
                self.lines.append(partial.decode("utf-8", "replace"))
        source.close()


def _status_text(code: int) -> tuple[str, int]:
    """(description, postbud's own exit status) of a child's return code."""
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name} ({number})", 128 + number
    return f"exit status {code}", code


def run_command(
    mailer: Mailer,
    command: Sequence[str],
    to: list[str] | None,
    subject: str | None,
    always: bool,
    lines: int,
) -> int:
    """Run ``command``; mail when it fails (or always); return the exit status to use."""
    tail = _Tail(lines)
    started = time.time()
    tty = sys.stdin is not None and sys.stdin.isatty()
    try:
        # Without a terminal (cron, CI) the child gets its own session, so a signal
        # sent to our process group reaches it once: from us. At a terminal it stays
        # in the foreground group, where Ctrl-C already reaches it.
        child = subprocess.Popen(  # noqa: S603 - running the user's command is the job
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=not tty,
        )
    except OSError as exc:
        message = f"postbud: cannot run {command[0]}: {exc.strerror or exc}"
        print(message, file=sys.stderr, flush=True)
        tail.lines.append(message)
        code, status = 127, "could not be started"
        _report(mailer, command, to, subject, status, started, tail)
        return code

    def forward(signum: int, frame: object) -> None:
        if not (tty and signum == signal.SIGINT):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    pumps = [
        threading.Thread(target=tail.pump, args=(child.stdout, sys.stdout.buffer), daemon=True),
        threading.Thread(target=tail.pump, args=(child.stderr, sys.stderr.buffer), daemon=True),
    ]
    try:
        for pump in pumps:
            pump.start()
        returncode = child.wait()
        for pump in pumps:
            pump.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status, code = _status_text(returncode)
    if returncode != 0 or always:
        _report(mailer, command, to, subject, status, started, tail)
    return code


def _report(
    mailer: Mailer,
    command: Sequence[str],
    to: list[str] | None,
    subject: str | None,
    status: str,
    started: float,
    tail: _Tail,
) -> None:
    """Mail the result now; if Gmail cannot be reached, keep it in the spool."""
    ended = time.time()
    shown = shlex.join(mask_argv(list(command)))
    host = socket.gethostname()
    ok = status == "exit status 0"
    tag = f"[{mailer.settings.alert_tag}] " if mailer.settings.alert_tag else ""
    head = subject or shown
    title = one_line(f"{tag}{'OK' if ok else 'FAILED'} ({status}): {head} on {host}", 200)
    rows = [
        ("Command", shown),
        ("Result", status),
        ("Started", _utc(started)),
        ("Finished", _utc(ended)),
        ("Duration", f"{ended - started:.1f} s"),
        ("Host", host),
        ("User", _user()),
        ("Directory", os.getcwd()),
    ]
    output = [mask_text(line) for line in tail.lines]
    text = "\n".join(f"{k + ':':<10} {v}" for k, v in rows)
    text += f"\n\nLast {len(output)} line(s) of output (stdout and stderr):\n"
    text += "\n".join(output) + "\n\n-- \nSent by postbud run.\n"
    page = html_page(
        title,
        [
            html_table(rows),
            f'<p style="font-weight:600">Last {len(output)} line(s) of output</p>',
            html_pre("\n".join(output)),
        ],
    )
    envelope = mailer.build(
        to or [mailer.settings.username],
        title,
        text,
        page,
        headers={"X-Postbud-Alert": "run", "X-Postbud-Count": "1"},
    )
    try:
        outcome = mailer._send_or_keep(envelope, "alert")
    except DeliveryError as exc:
        print(f"postbud: the report could not be sent: {exc}", file=sys.stderr, flush=True)
        return
    if isinstance(outcome, DeliveryError):
        print(f"postbud: {mailer.kept_line('the report', outcome)}", file=sys.stderr, flush=True)


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a minimal container
        return str(os.getuid()) if hasattr(os, "getuid") else "?"
