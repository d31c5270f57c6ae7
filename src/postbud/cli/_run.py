"""``postbud run -- CMD``: run a job, pass its output through, mail its failure.

The child's stdout and stderr go to ours unchanged (byte for byte, each to its own
stream), and the last lines of both are kept for the mail. SIGINT and SIGTERM sent to
postbud are passed on to the child; postbud exits with the child's status (128+N for
signal N), whether or not the mail could be sent, so a cron job or a CI step keeps its
meaning. If Gmail cannot be reached the alert stays in the spool and the next postbud
command sends it.

Bad settings (no password, a username that is no address, a bad ``--to``) do not stop
the job either: a job that does not run is worse than a failure that is not mailed. One
line says what is wrong before the job starts, the summary line repeats it after the
job, and the status is still the job's own.

Both pipes are read by one selector loop, in the order the kernel reports them ready,
so the mail's lines are in the order they arrived as far as it can tell. That is best
effort: two writes to different pipes in the same instant cannot be ordered from
outside the child, and the mail says so.
"""

from __future__ import annotations

import argparse
import collections
import getpass
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from postbud._address import parse_addresses
from postbud._html import html_page, html_pre, html_table, one_line
from postbud._mailer import Mailer
from postbud._mask import mask_argv, mask_text
from postbud._message import Envelope
from postbud._smtp import summary
from postbud.errors import ConfigurationError, InvalidMessageError, PostbudError

from ._common import mailer_from, say

__all__ = ["run_command", "run_job"]

# Passed on to the command. SIGKILL cannot be: a job whose postbud is killed with -9
# goes on running on its own (and nothing is mailed).
_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
_FORWARDED = tuple(getattr(signal, name) for name in _NAMES if hasattr(signal, name))
#: After the command exited, how long to wait for its output pipes to close (a
#: background process it started may hold them open for ever).
PIPE_GRACE = 2.0
#: How often the loop looks whether the command exited while its pipes stay open.
_POLL = 0.2
#: A line longer than this is cut in the report (the pass-through is untouched).
MAX_LINE = 2000
#: What the mail says about the order of its lines (the truth: see the module docstring).
ORDER_NOTE = "stdout and stderr together; lines written close together may be out of order"


def run_job(args: argparse.Namespace, command: Sequence[str]) -> int:
    """Check the settings, run ``command`` whatever they are, return its status.

    A settings mistake is said once now and once in the summary; it never keeps the
    job from running (``postbud run`` exits with the job's status, always)."""
    mailer: Mailer | None = None
    problem: str | None = None
    try:
        mailer = _mailer_for(args)
    except Exception as exc:  # whatever it is, the job still runs
        if getattr(args, "debug", False):
            traceback.print_exc()
        problem = (
            str(exc) if isinstance(exc, PostbudError) else f"unexpected {type(exc).__name__}: {exc}"
        )
        say(f"the job runs, but its failure cannot be mailed: {problem}")
    try:
        return run_command(
            mailer, command, args.to, args.subject, args.always, args.lines, problem=problem
        )
    finally:
        if mailer is not None:
            mailer.close(timeout=0)


def _mailer_for(args: argparse.Namespace) -> Mailer:
    for address in args.to or ():  # checked before the job runs, not after it
        try:
            parse_addresses(address)
        except InvalidMessageError as exc:
            raise ConfigurationError(f"--to: {exc}") from None
    return mailer_from(args)


class _Pipe:
    """One of the child's output pipes: where its bytes go, and its unfinished line."""

    def __init__(self, source: IO[bytes], sink: IO[bytes] | None) -> None:
        self.source = source
        self.sink = sink
        self.partial = bytearray()  # the current line, at most MAX_LINE + 1 bytes of it
        self.length = 0  # its whole length

    def pass_on(self, chunk: bytes) -> bool:
        """Write ``chunk`` to our own stream; False once its reader went away."""
        if self.sink is None:
            return True
        try:
            self.sink.write(chunk)
            self.sink.flush()
        except (OSError, ValueError):
            # Our reader went away (``postbud run -- yes | head -1``): stop reading,
            # so the command gets SIGPIPE as it would without us.
            return False
        return True


class _Tail:
    """The last ``size`` lines of the child's stdout and stderr, as they arrive."""

    def __init__(self, size: int) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=max(0, size))

    def add(self, line: bytes, length: int) -> None:
        text = line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        if length > MAX_LINE:
            text += f" … (a line of {length:,} bytes)"
        self.lines.append(text)

    def feed(self, pipe: _Pipe, chunk: bytes) -> None:
        pieces = chunk.split(b"\n")
        for number, piece in enumerate(pieces):
            if len(pipe.partial) <= MAX_LINE:
                pipe.partial += piece[: MAX_LINE + 1 - len(pipe.partial)]
            pipe.length += len(piece)
            if number < len(pieces) - 1:  # a newline ends this line
                self.add(bytes(pipe.partial), pipe.length)
                pipe.partial.clear()
                pipe.length = 0

    def end(self, pipe: _Pipe) -> None:
        """The pipe closed: its last line counts even without a newline."""
        if pipe.length:
            self.add(bytes(pipe.partial), pipe.length)
            pipe.partial.clear()
            pipe.length = 0


def _pump(proc: subprocess.Popen[bytes], pipes: Sequence[_Pipe], tail: _Tail) -> int:
    """Pass both pipes on in one loop until they close; return the command's status.

    One loop (not a thread per pipe) so the tail gets lines in the order they became
    readable. Once the command exited, its pipes get ``PIPE_GRACE`` seconds to close:
    a background process it started may hold them open for ever."""
    selector = selectors.DefaultSelector()
    for pipe in pipes:
        selector.register(pipe.source, selectors.EVENT_READ, pipe)
    returncode: int | None = None
    deadline = 0.0
    try:
        while selector.get_map():
            if returncode is None:
                returncode = proc.poll()
                if returncode is not None:
                    deadline = time.monotonic() + PIPE_GRACE
            wait = _POLL if returncode is None else deadline - time.monotonic()
            if wait <= 0:
                break
            for key, _ in selector.select(wait):
                pipe = key.data
                chunk = os.read(key.fd, 65536)
                if chunk and pipe.pass_on(chunk):
                    tail.feed(pipe, chunk)
                    continue
                selector.unregister(key.fileobj)
                tail.end(pipe)
                pipe.source.close()
    finally:
        for key in list(selector.get_map().values()):
            tail.end(key.data)
            key.data.source.close()
        selector.close()
    return proc.wait() if returncode is None else returncode


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
    mailer: Mailer | None,
    command: Sequence[str],
    to: list[str] | None,
    subject: str | None,
    always: bool,
    lines: int,
    *,
    problem: str | None = None,
) -> int:
    """Run ``command``; mail when it fails (or always); return the exit status to use.

    Without a ``mailer`` (``problem`` says why there is none) the command runs all the
    same and the summary line says why nothing was mailed."""
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
            run = _Run(command, to, subject, "could not be started", started, time.time(), tail)
            _finish(mailer, run, problem, mail=True)
            return 127
        for signum in pending:
            child[0].send_signal(signum)
        proc = child[0]
        pipes = [
            _Pipe(source, _binary(ours))
            for source, ours in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
            if source is not None  # never: both are PIPE
        ]
        returncode = _pump(proc, pipes, tail)
        ended = time.time()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status, code = _status_text(returncode)
    run = _Run(command, to, subject, status, started, ended, tail)
    _finish(mailer, run, problem, mail=returncode != 0 or always)
    return code


def _finish(mailer: Mailer | None, run: _Run, problem: str | None, *, mail: bool) -> None:
    """Mail the report when ``mail``; without a Mailer, the summary line says why not."""
    if mailer is not None:
        if mail:
            _report(mailer, run)
        return
    if run.status.startswith("exit status"):
        ended = f"the job ended with {run.status}"
    elif run.status.startswith("killed by"):
        ended = f"the job was {run.status}"
    else:
        ended = f"the job {run.status}"
    if not mail:
        say(f"{ended}; a failure could not have been mailed: {problem}")
    elif run.status == "exit status 0":
        say(f"{ended}; the report could not be mailed: {problem}")
    else:
        say(f"{ended}; the failure could not be mailed: {problem}")


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
        print(
            f"postbud: {address} was refused: {code} {summary(reply)}", file=sys.stderr, flush=True
        )


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
    text += f"\n\nLast {len(output)} line(s) of output ({ORDER_NOTE}):\n"
    text += "\n".join(output) + "\n\n-- \nSent by postbud run.\n"
    page = html_page(
        title,
        [
            html_table(rows),
            f'<p style="font-weight:600">Last {len(output)} line(s) of output</p>',
            f"<p>{ORDER_NOTE.capitalize()}.</p>",
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
