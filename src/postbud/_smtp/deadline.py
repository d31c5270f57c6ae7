"""smtplib connections with one deadline for the whole attempt, not one per socket call.

``timeout`` in postbud bounds a whole delivery attempt (connect, TLS, EHLO, AUTH, the
transaction): every socket operation gets the time that is left. smtplib gives each
call a fresh timeout, so a server trickling one byte at a time could hold a request
thread for ever; these subclasses check the deadline on every send and every read.
"""

from __future__ import annotations

import contextlib
import io
import math
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["EHLO_NAME", "Connection", "SMTPConnection", "SMTPSSLConnection"]

# EHLO name: never socket.getfqdn() (slow, and it leaks the host name into Received:).
EHLO_NAME = "localhost"


class _Deadline:
    """smtplib hooks that give every socket operation the time left, not a fresh timeout."""

    deadline: float = math.inf
    sock: socket.socket | None
    file: Any
    command_encoding: str
    #: While a list: what ``send`` would write, kept for one write (``corked``).
    _corked: list[bytes] | None = None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        return left

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return super()._get_socket(host, port, self._left())  # type: ignore[misc,no-any-return]

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Commands written inside go out in one write when the block ends (RFC 2920
        PIPELINING): through ``putcmd``, so smtplib's own newline check and encoding
        apply. Nothing is written if the block raises."""
        self._corked = []
        try:
            yield
            data = b"".join(self._corked)
        finally:
            self._corked = None
        self.send(data)

    def send(self, s: ReadableBuffer | str) -> None:
        if self._corked is not None:
            self._corked.append(s.encode(self.command_encoding) if isinstance(s, str) else bytes(s))
            return
        if self.sock is not None:
            self.sock.settimeout(self._left())  # sendall: one timeout for all of it
        try:
            super().send(s)  # type: ignore[misc]
        except smtplib.SMTPServerDisconnected as exc:
            _timeout_from(exc)
            raise

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            # smtplib would use sock.makefile(), where a server trickling one byte at a
            # time gets a fresh timeout per recv; this reader checks the deadline each time.
            self.file = io.BufferedReader(_DeadlineReader(self))
        try:
            return super().getreply()  # type: ignore[misc,no-any-return]
        except smtplib.SMTPServerDisconnected as exc:
            _timeout_from(exc)
            raise


def _timeout_from(exc: smtplib.SMTPServerDisconnected) -> None:
    # smtplib reports a socket timeout as a disconnect ("Connection unexpectedly
    # closed: timed out"); the caller should see the deadline for what it is.
    if isinstance(exc.__context__, TimeoutError):
        raise TimeoutError("timed out talking to the server") from exc


class _DeadlineReader(io.RawIOBase):
    def __init__(self, owner: _Deadline) -> None:
        self._owner = owner
        self._sock = owner.sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        assert self._sock is not None
        self._sock.settimeout(self._owner._left())
        return self._sock.recv_into(buffer)


class SMTPConnection(_Deadline, smtplib.SMTP):
    def __init__(self, host: str, port: int, *, deadline: float) -> None:
        self.deadline = deadline  # before smtplib connects in __init__
        super().__init__(host, port, local_hostname=EHLO_NAME)


class SMTPSSLConnection(_Deadline, smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, *, deadline: float, context: ssl.SSLContext) -> None:
        self.deadline = deadline
        super().__init__(host, port, local_hostname=EHLO_NAME, context=context)


Connection = SMTPConnection | SMTPSSLConnection
