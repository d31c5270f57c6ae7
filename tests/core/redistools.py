"""A real ``redis-server`` for the tests of the shared state (issue 21).

``redis_server`` starts Debian's ``redis-server`` on a free 127.0.0.1 port, without
persistence (``--save "" --appendonly no``), in a temporary folder, and stops it after
the test; a test may ``stop()``, ``pause()`` (SIGSTOP: a server that hangs) and
``start()`` it again on the same port. Without ``redis-server`` the tests skip with
the reason, except with ``CI=true`` in the environment, where they fail: CI must
install it (``apt-get install redis-server``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "s3cret-redis-pass"  # the tests assert it never shows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; ``url`` has no password, ``password`` is required."""

    def __init__(
        self, binary: str, folder: Path, password: str = PASSWORD, *, tls: bool = False
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.password = password
        self.port = free_port()
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []
        #: With ``tls``: the PEM file of the CA that signed the server's certificate
        #: (trustme), for ``ca_file``; the server speaks TLS only.
        self.ca_file: str | None = None
        self._listen = ["--port", str(self.port)]
        if tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
            ca.cert_pem.write_to_path(str(paths["ca"]))
            cert.private_key_pem.write_to_path(str(paths["key"]))
            cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
            self.ca_file = str(paths["ca"])
            self._listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(paths["cert"]),
                "--tls-key-file",
                str(paths["key"]),
                "--tls-ca-cert-file",
                str(paths["ca"]),
                "--tls-auth-clients",
                "no",
            ]

    def start(self) -> None:
        """Start (again, on the same port) and wait until it answers."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                *self._listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--requirepass",
                self.password,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                assert self.process.poll() is None, "redis-server exited"
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (its data is gone: no persistence)."""
        if self.process is None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        for client in self._clients:
            client.close()
        self._clients.clear()

    def pause(self) -> None:
        """SIGSTOP: the port accepts connections, nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        """A redis-py client, to look at what the store wrote."""
        import redis

        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.ca_file} if self.ca_file else {}
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=2,
            **tls,
        )
        self._clients.append(client)  # closed in stop()
        return client


def redis_binary() -> str:
    """The path of ``redis-server``, or skip (fail with ``CI=true``) with the reason."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        reason = (
            "redis-server is not installed (apt-get install redis-server): the tests of "
            "the shared state on Redis need a real server"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must install it.")
        pytest.skip(reason)
    return found


def _running(folder: Path, *, tls: bool) -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'postbud[redis]'")
    server = RedisServer(redis_binary(), folder, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running ``redis-server`` for this test, stopped afterwards."""
    yield from _running(tmp_path, tls=False)


@pytest.fixture
def redis_tls_server(tmp_path: Path) -> Iterator[RedisServer]:
    """The same, speaking TLS only (``rediss://``), with a trustme certificate whose CA
    is ``ca_file``."""
    yield from _running(tmp_path, tls=True)
