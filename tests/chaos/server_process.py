"""The sync server as a child process that can be SIGKILLed and started again.

The normal runs use the real ``lfws serve`` (``python -m lfws_adapters.cli``);
the planted-bug runs use ``broken_server.py``, which builds the same server
over a broken event log. Every start uses the same database and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path

__all__ = ["ServerProcess", "free_port", "lfws_serve_command"]

START_TIMEOUT = 20.0  # a loaded 2-core machine may take seconds to import and bind
_STOP_TIMEOUT = 10.0
_BROKEN_SERVER = Path(__file__).with_name("broken_server.py")


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lfws_serve_command(bug: str | None = None) -> list[str]:
    """The command before ``serve``'s options: the real server, or one with a planted bug."""
    if bug is None:
        return [sys.executable, "-m", "lfws_adapters.cli", "serve"]
    return [sys.executable, str(_BROKEN_SERVER), bug]


class ServerProcess:
    """``lfws serve`` on a fixed port and database, restartable."""

    def __init__(
        self,
        *,
        db: Path,
        port: int,
        log_dir: Path,
        bug: str | None = None,
        ping_interval: float = 1.0,
        ping_timeout: float = 2.0,
    ) -> None:
        self.db = db
        self.port = port
        self.bug = bug
        self.starts = 0
        self.kills = 0
        self.runtimes: list[str] = []
        self.start_seconds: list[float] = []
        """How long each start took, from spawning to ``listening on``."""
        self._log_dir = log_dir
        self._ping = ("--ping-interval", str(ping_interval), "--ping-timeout", str(ping_timeout))
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """Whether a server process is up."""
        return self._process is not None

    async def start(self, runtime: str = "asyncio") -> None:
        """Start the server and wait for its ``listening on`` line; retry while the port is busy."""
        assert self._process is None, "already running"
        command = [
            *lfws_serve_command(self.bug),
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            "--runtime",
            runtime,
            "--log-level",
            "WARNING",
            *self._ping,
        ]
        began = asyncio.get_running_loop().time()
        deadline = began + START_TIMEOUT
        while True:
            stderr = self._log_dir / f"server-{self.starts}.log"
            self.starts += 1
            with stderr.open("w") as err:
                process = await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.PIPE, stderr=err
                )
            assert process.stdout is not None
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                line = await asyncio.wait_for(process.stdout.readline(), max(remaining, 0.1))
            except TimeoutError:
                line = b""
            except BaseException:  # cancelled: leave no orphan behind
                await asyncio.shield(self._reap(process, signal.SIGKILL))
                raise
            if line.startswith(b"listening on"):
                self._process = process
                self.runtimes.append(runtime)
                self.start_seconds.append(asyncio.get_running_loop().time() - began)
                return
            await self._reap(process, signal.SIGKILL)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"lfws serve did not start:\n{stderr.read_text()}")
            await asyncio.sleep(0.1)  # the port may still be held by the killed server

    async def kill(self) -> None:
        """SIGKILL the server: no shutdown, no close frames, nothing flushed."""
        if self._process is not None:
            process, self._process = self._process, None
            self.kills += 1
            await self._reap(process, signal.SIGKILL)

    async def stop(self) -> None:
        """Stop the server gracefully (SIGTERM)."""
        if self._process is not None:
            process, self._process = self._process, None
            await self._reap(process, signal.SIGTERM)

    @staticmethod
    async def _reap(process: asyncio.subprocess.Process, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
        assert process.stdout is not None
        await process.stdout.read()  # to EOF, so that the pipe's transport is closed
