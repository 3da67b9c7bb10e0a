"""Broadcasts go straight to the transport, yet never ahead of what they must follow."""

from __future__ import annotations

import anyio
import pytest

from lfws_adapters.auth import Credentials
from lfws_adapters.event_log import InMemoryEventLog
from lfws_core.codec import encode_message
from lfws_core.messages import Auth, AuthSuccess, RequestEvents, SyncComplete
from lfws_core.ws import WsState

from .helpers import REPOSITORY, RawClient, client_config, eventually, live
from .hosts import RecordingHost
from .runtimes import Runtime

pytestmark = pytest.mark.anyio


async def test_a_client_gets_broadcasts_only_after_its_auth_success(runtime: Runtime) -> None:
    # The raw client's auth verdict is held back while the writer pushes:
    # those events must reach it by catch-up, after auth_success, and the
    # writer's later pushes by broadcast, never ahead of auth_success.
    verdict = anyio.Event()
    waiting: list[str] = []

    async def authenticate(credentials: Credentials) -> object:
        if credentials.token == "raw":
            waiting.append("raw")
            await verdict.wait()
        return credentials.token or "anonymous"

    writer = RecordingHost("writer")
    log = InMemoryEventLog()
    async with (
        runtime.module.serve(event_log=log, port=0, authenticator=authenticate) as server,
        runtime.module.connect(client_config(server.url), writer) as w,
    ):
        await live(w)
        with RawClient(server.port) as raw:

            def open_and_ask() -> None:
                raw.sock.connect(("127.0.0.1", raw.port))
                raw.send_texts()  # the handshake request
                raw.read_until(lambda: raw.ws.state is WsState.OPEN)
                raw.send_texts(
                    encode_message(Auth(token="raw")),
                    encode_message(RequestEvents(repository=REPOSITORY, after_sequence=0)),
                )

            await anyio.to_thread.run_sync(open_and_ask)
            await eventually(lambda: waiting == ["raw"])
            for n in range(5):
                writer.edit(w, REPOSITORY, f"before{n}", n=n)
            await eventually(writer.all_synced)

            verdict.set()
            await anyio.to_thread.run_sync(
                raw.read_until, lambda: any(isinstance(m, SyncComplete) for m in raw.messages)
            )
            for n in range(5):
                writer.edit(w, REPOSITORY, f"after{n}", n=n)
            await anyio.to_thread.run_sync(raw.read_until, lambda: len(raw.events()) >= 10)

            assert isinstance(raw.messages[0], AuthSuccess)
            assert [e.server_sequence for e in raw.events()[:5]] == [1, 2, 3, 4, 5]
            assert sorted({e.server_sequence for e in raw.events()}) == list(range(1, 11))
