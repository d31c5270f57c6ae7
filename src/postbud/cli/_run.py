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
from dataclasses import dataclass
from typing import IO

from postbud._html import html_page, html_pre, html_table, one_line
from postbud._mailer import Mailer
from postbud._mask import mask_argv, mask_text
from postbud._message import Envelope

__all__ = ["run_command"]

# Passed on to the command. SIGKILL cannot be: a job whose postbud is killed with -9
# goes on running on its own (and nothing is mailed).
_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
_FORWARDED = tuple(getattr(signal, name) for name in _NAMES if hasattr(signal, name))
#: After the command exited, how long to wait for its output pipes to close (a
#: background process it started may hold them open for ever).
PIPE_GRACE = 2.0
#: A line longer than this is cut in the report (the pass-through is untouched).
MAX_LINE = 2000


class _Tail:
    """The last ``size`` lines of the child's stdout and stderr, as they arrive."""

    def __init__(self, size: int) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=max(0, size))
        self._lock = threading.Lock()

    def add(self, line: bytes, length: int) -> None:
        text = line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        if length > MAX_LINE:
            text += f" … (a line of {length:,} bytes)"
        with self._lock:
            self.lines.append(text)

    def pump(self, source: IO[bytes], sink: IO[bytes] | None) -> None:
        partial = bytearray()  # the current line, at most MAX_LINE + 1 bytes of it
        length = 0  # its whole length
        try:
            while True:
                chunk = os.read(source.fileno(), 65536)
                if not chunk:
                    break
                if sink is not None:
                    try:
                        sink.write(chunk)
                        sink.flush()
                    except (OSError, ValueError):
                        # Our reader went away (``postbud run -- yes | head -1``): stop
                        # reading, so the command gets SIGPIPE as it would without us.
                        break
                pieces = chunk.split(b"\n")
                for number, piece in enumerate(pieces):
                    if len(partial) <= MAX_LINE:
                        partial += piece[: MAX_LINE + 1 - len(partial)]
                    length += len(piece)
                    if number < len(pieces) - 1:  # a newline ends this line
                        self.add(bytes(partial), length)
                        partial.clear()
                        length = 0
            if length:
                self.add(bytes(partial), length)
        finally:
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
    child: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if tty and signum == signal.SIGINT:
            return  # at a terminal, Ctrl-C reached the command already
        if child:
            child[0].send_signal(signum)
        else:
            pending.append(signum)  # arrived while the command was starting

    # Handlers first: a SIGTERM between start and handler would orphan the command.
    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        try:
            # Without a terminal (cron, CI) the command gets its own session, so a
            # signal sent to our process group reaches it once: from us. At a
            # terminal it stays in the foreground group, where Ctrl-C reaches it.
            child.append(
                subprocess.Popen(  # noqa: S603 - running the user's command is the job
                    list(command),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=not tty,
                )
            )
        except OSError as exc:
            message = f"postbud: cannot run {command[0]}: {exc.strerror or exc}"
            print(message, file=sys.stderr, flush=True)
            tail.add(message.encode(), len(message))
            failed = "could not be started"
            _report(mailer, _Run(command, to, subject, failed, started, time.time(), tail))
            return 127
        for signum in pending:
            child[0].send_signal(signum)
        proc = child[0]
        pumps = [
            threading.Thread(target=tail.pump, args=(pipe, _binary(ours)), daemon=True)
            for pipe, ours in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
        ]
        for pump in pumps:
            pump.start()
        returncode = proc.wait()
        ended = time.time()
        grace = time.monotonic() + PIPE_GRACE
        for pump in pumps:
            pump.join(max(0.0, grace - time.monotonic()))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status, code = _status_text(returncode)
    if returncode != 0 or always:
        _report(mailer, _Run(command, to, subject, status, started, ended, tail))
    return code


def _binary(stream: IO[str] | None) -> IO[bytes] | None:
    return getattr(stream, "buffer", None)  # None when postbud's own stream is closed


@dataclass
class _Run:
    """One run of the command, as the report tells it."""

    command: Sequence[str]
    to: list[str] | None
    subject: str | None
    status: str
    started: float
    ended: float
    tail: _Tail


def _report(mailer: Mailer, run: _Run) -> None:
    """Mail the result now; if Gmail cannot be reached, keep it in the spool.

    Never raises: whatever happens to the report, postbud exits with the command's
    status."""
    try:
        envelope = _envelope(mailer, run)
        result, kept = mailer.outbox.send_or_keep(envelope, "alert")
    except Exception as exc:  # DeliveryError included: one line, the status stays
        print(f"postbud: the report could not be sent: {exc}", file=sys.stderr, flush=True)
        return
    if kept is not None:
        print(
            f"postbud: {mailer.outbox.kept_line('the report', kept)}", file=sys.stderr, flush=True
        )
    for address, (code, reply) in result.refused.items() if result else ():
        print(f"postbud: {address} was refused: {code} {reply}", file=sys.stderr, flush=True)


def _envelope(mailer: Mailer, run: _Run) -> Envelope:
    command, status, started, ended = run.command, run.status, run.started, run.ended
    shown = mailer.mask(shlex.join(mask_argv(list(command))))
    host = socket.gethostname()
    ok = status == "exit status 0"
    tag = f"[{mailer.settings.alert_tag}] " if mailer.settings.alert_tag else ""
    head = mailer.mask(run.subject) if run.subject else shown
    title = one_line(f"{tag}{'OK' if ok else 'FAILED'} ({status}): {head} on {host}", 200)
    rows = [
        ("Command", shown),
        ("Result", status),
        ("Started", _utc(started)),
        ("Finished", _utc(ended)),
        ("Duration", f"{ended - started:.1f} s"),
        ("Host", host),
        ("User", _user()),
        ("Directory", _cwd()),
    ]
    output = [mailer.mask(mask_text(line)) for line in run.tail.lines]
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
    return mailer.build(
        run.to or [mailer.settings.username],
        title,
        text,
        page,
        headers={"X-Postbud-Alert": "run", "X-Postbud-Count": "1"},
    )


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the job removed its own directory
        return "(removed)"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a minimal container
        return str(os.getuid()) if hasattr(os, "getuid") else "?"
