"""Running ``eventaudit`` as a real process, with its output read as it comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from tests.integration.servers import free_port

CLI = [sys.executable, "-m", "eventaudit.cli"]
READ_TOKEN = "read-token-0123456789abcdef"
INGEST_TOKEN = "ingest-token-0123456789abcdef"


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any EVENTAUDIT_* variable, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTAUDIT_")}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``eventaudit ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [*CLI, *args], env=environment(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class CLIProcess:
    """``eventaudit ARGS`` running in the background; every line of stdout and stderr is collected."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, read_stdout: bool = True
    ) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args],
            env=environment(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._pumps = [self._pump(self.proc.stderr, self.err)]
        if read_stdout:
            self._pumps.append(self._pump(self.proc.stdout, self.out))

    @staticmethod
    def _pump(stream: IO[str], lines: list[str]) -> threading.Thread:
        def run() -> None:
            for line in stream:
                lines.append(line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for_output(self, text: str, *, stream: str = "stderr", timeout: float = 30) -> None:
        """Wait until ``text`` was printed; fail at once if the process ended without printing it."""

        def printed() -> bool:
            if text in (self.stderr if stream == "stderr" else self.stdout):
                return True
            if self.proc.poll() is not None:
                self.drain()
                if text in (self.stderr if stream == "stderr" else self.stdout):
                    return True
                raise AssertionError(f"exited {self.proc.returncode} without printing {text!r}:\n{self.output()}")
            return False

        wait_for(printed, timeout, f"{text!r} on {stream}:\n{self.output()}")

    def drain(self) -> None:
        """Wait for the output of an ended process to be read, then close the pipes."""
        for pump in self._pumps:
            pump.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self.drain()
        return code

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and the exit status once it is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


class AuditService(CLIProcess):
    """``eventaudit audit`` on a free loopback port, healthy before the constructor returns."""

    def __init__(
        self,
        db: str,
        *options: str,
        cwd: Path | None = None,
        port: int | None = None,
        read_token: str | None = READ_TOKEN,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tokens = ["--read-token", read_token] if read_token else []
        args = ["audit", "--port", str(self.port), "--db", db, "--log-level", "warning", *tokens, *options]
        super().__init__(*args, env=env, cwd=cwd)
        wait_for(self._healthy, 60, f"the audit service on {self.url} to answer /healthz")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            self.drain()
            raise AssertionError(f"eventaudit audit exited {self.proc.returncode}:\n{self.output()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def items(url: str, token: str = READ_TOKEN, **params: str) -> list[dict[str, Any]]:
    """Every item of ``GET /v1/events`` matching ``params``, following the cursor to the end."""
    found: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "1000", **params}
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        while True:
            response = client.get("/v1/events", params=query)
            response.raise_for_status()
            page = response.json()
            if not page["items"]:
                return found
            found.extend(page["items"])
            query["cursor"] = page["next_cursor"]
