"""A FakeGmail in its own process, so the server's work does not compete with the
client for the GIL (Gmail is remote too). Used by bench_outbox.py.

Protocol on stdin/stdout: it prints one JSON line (port, ca_file, account), then
answers each command line with "ok": ``delay <COMMAND> <seconds>``, ``count``, ``reset``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from types import TracebackType
from typing import Any

from postbud.testing import FakeGmail


class RemoteFake:
    """The client side: starts the server process and sends it commands."""

    def __init__(self, mode: str = "ssl") -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._values: dict[str, Any] = json.loads(self._proc.stdout.readline())
        self.port: int = self._values["port"]
        self.ca_file: str = self._values["ca_file"]
        self.username: str = self._values["username"]
        self.app_password: str = self._values["app_password"]
        self.mode = mode

    def command(self, line: str) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The server's ``FakeGmail.settings_values()``, with ``overrides``."""
        return {**self._values, **overrides}

    def __enter__(self) -> RemoteFake:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def serve(mode: str) -> None:
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    with FakeGmail(mode) as fake:  # type: ignore[arg-type]
        print(json.dumps(fake.settings_values(timeout=30)), flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[0] == "delay":
                fake.delay(float(words[2]), words[1])
                print("ok", flush=True)
            elif words[0] == "count":
                print(len(fake.messages), flush=True)
            elif words[0] == "reset":
                fake.messages.clear()
                print("ok", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
