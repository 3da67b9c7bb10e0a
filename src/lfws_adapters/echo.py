"""A WebSocket echo endpoint, for conformance suites such as Autobahn.

:class:`EchoHub` is a :class:`~lfws_adapters.runtime.PeerFactory`, so every
runtime serves it with the very transport code the sync server uses::

    async with serve_peers(EchoHub(), host="127.0.0.1", port=9001) as listener:
        ...

Each connection runs a :class:`lfws_core.ws.WsServer` directly: the upgrade
is accepted, every text and binary message is sent back unchanged, pings are
answered and close handshakes completed by the WebSocket layer itself. There
is no session protocol on top, no authentication and no timers.
"""

from __future__ import annotations

import logging

from lfws_core.close_codes import CloseCode
from lfws_core.ws import (
    BinaryMessage,
    Closed,
    HttpRequest,
    PerMessageDeflate,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsEvent,
    WsServer,
    WsState,
)

from .runtime import Link

__all__ = ["ECHO_CONFIG", "EchoHub", "EchoPeer"]

logger = logging.getLogger("lfws.echo")

ECHO_CONFIG = ServerConfig(
    path="/", accept_binary=True, max_message_size=16 << 20, compression=PerMessageDeflate()
)
"""The default: upgrades on ``/``, binary accepted, messages up to 16 MiB, and
permessage-deflate accepted (Autobahn cases 12 and 13)."""

_HTTP_ANSWER = b"lfws WebSocket echo endpoint: connect with a WebSocket client\n"


class EchoHub:
    """Makes an :class:`EchoPeer` per accepted transport and keeps track of them."""

    def __init__(self, config: ServerConfig = ECHO_CONFIG) -> None:
        self.config = config
        self._peers: set[EchoPeer] = set()

    @property
    def peers(self) -> frozenset[EchoPeer]:
        """The live connections."""
        return frozenset(self._peers)

    def connect(self, link: Link, name: str) -> EchoPeer:
        """Start serving ``link``; ``name`` (the peer address) is for logs."""
        peer = EchoPeer(self, link, name)
        self._peers.add(peer)
        logger.debug("%s connected", name)
        return peer

    def shutdown(self) -> None:
        """Close every connection: 1001 once open, the transport before that."""
        for peer in list(self._peers):
            peer.close(CloseCode.GOING_AWAY, "server shutting down")

    def _forget(self, peer: EchoPeer) -> None:
        self._peers.discard(peer)


class EchoPeer:
    """One connection of the echo endpoint."""

    def __init__(self, hub: EchoHub, link: Link, name: str) -> None:
        self.hub = hub
        self.link = link
        self.name = name
        self.ws = WsServer(hub.config)

    def data_received(self, data: bytes) -> None:
        """Feed bytes read from the transport and answer them."""
        self._answer(self.ws.receive_data(data))

    def connection_lost(self, reason: str = "connection lost") -> None:
        """Report the transport closed or failed."""
        self.ws.receive_data(b"")  # ignored once the connection has ended
        logger.debug("%s gone: %s", self.name, reason)
        self.hub._forget(self)

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake with ``code``, or drop a transport not yet open."""
        if self.ws.state is WsState.OPEN:
            self.ws.close(code, reason)
            self._flush()
        elif self.ws.state is WsState.CONNECTING:
            self.link.close()
            self.hub._forget(self)

    def _answer(self, events: list[WsEvent]) -> None:
        for event in events:
            self._react(event)
        self._flush()

    def _react(self, event: WsEvent) -> None:
        ws = self.ws
        # Messages read in the same chunk as a close frame arrive after the
        # close was answered; nothing may follow that answer.
        if type(event) is TextMessage:
            if ws.state is WsState.OPEN:
                ws.send_text(event.text)
        elif type(event) is BinaryMessage:
            if ws.state is WsState.OPEN:
                ws.send_binary(event.data)
        elif isinstance(event, UpgradeRequest):
            for early in ws.accept():
                self._react(early)
        elif isinstance(event, HttpRequest):
            ws.send_http_response(200, [("Content-Type", "text/plain")], _HTTP_ANSWER)
        elif isinstance(event, Closed):
            logger.debug("%s closed: %d %s", self.name, event.code, event.reason)

    def _flush(self) -> None:
        data = self.ws.data_to_send()
        if data:
            self.link.write(data)
        if self.ws.transport_should_close:
            self.link.close()
            self.hub._forget(self)
