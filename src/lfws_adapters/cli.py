"""The ``lfws`` command line: ``lfws serve`` runs the sync server; ``lfws demo`` shows it at work.

``lfws serve`` prints ``listening on ws://HOST:PORT/PATH`` as its first line
on stdout (so a script can start it with ``--port 0`` and read the port),
logs to stderr, and stops gracefully on SIGINT or SIGTERM: every client gets
a close frame (1001), the database is closed and the exit status is 0. A
problem it can explain (a port in use, an unreadable TLS file, a database
it cannot open) is one ``lfws serve: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    aclosing,
    asynccontextmanager,
)
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

from .auth import Authenticator, allow_anyone, token_authenticator
from .event_log import EventLog, StoreError
from .hub import ServerOptions
from .sqlite_event_log import SqliteEventLog

__all__ = ["main"]

logger = logging.getLogger("lfws.cli")

_EXIT_USAGE = 2
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEFAULTS = ServerOptions()


class _CannotServe(Exception):
    """A problem with the command's input or environment, told in one line."""


# --- argument types ------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _seconds_or_off(text: str) -> float | None:
    return None if text.strip().lower() == "off" else _seconds(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0 to 65535), got {text!r}")
    return int(text)


def _endpoint(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"the path must start with '/', got {text!r}")
    return text


def _postgres_url(text: str) -> str:
    # A libpq URL, or a "key=value ..." connection string: anything else is
    # more likely a file name meant for --db than a database to connect to.
    if not text.startswith(("postgresql://", "postgres://")) and "=" not in text:
        raise argparse.ArgumentTypeError(
            f"expected a postgresql:// URL, got {text!r} (--db takes a SQLite file)"
        )
    return text


def _token(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a token must not be empty")
    return text


class _Limit(NamedTuple):
    field: str
    """The :class:`ServerOptions` field; the flag is its name with dashes."""
    parse: Callable[[str], object]
    metavar: str
    help: str


_LIMITS = (
    _Limit(
        "max_message_size",
        _positive_int,
        "BYTES",
        "largest message accepted; a larger one closes the connection with 1009",
    ),
    _Limit("max_batch_length", _positive_int, "EVENTS", "most events in one push_events_batch"),
    _Limit("max_connections", _positive_int, "N", "connections beyond this are refused (HTTP 503)"),
    _Limit("handshake_timeout", _seconds, "SECONDS", "time allowed for the WebSocket handshake"),
    _Limit(
        "auth_timeout", _seconds, "SECONDS", "time allowed to authenticate (else close with 1008)"
    ),
    _Limit(
        "send_buffer_limit",
        _positive_int,
        "BYTES",
        "bytes queued for one client before it is dropped as too slow (1013)",
    ),
    _Limit("ping_interval", _seconds_or_off, "SECONDS", "time between server pings, or 'off'"),
    _Limit(
        "ping_timeout", _seconds, "SECONDS", "silence allowed after a ping (else close with 1011)"
    ),
    _Limit("page_size", _positive_int, "EVENTS", "events per message during catch-up"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lfws",
        description="Real-time, bidirectional sync for local-first Python apps over WebSockets.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the sync server",
        description=(
            "Run the WebSocket sync server, storing events in a SQLite file,"
            " or in PostgreSQL to run several nodes on one database."
        ),
    )
    serve.set_defaults(handler=_serve)
    add = serve.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=_port, default=8080, help="port; 0 takes a free one (default: %(default)s)")
    add(
        "--path",
        type=_endpoint,
        default=_DEFAULTS.path,
        help="WebSocket endpoint (default: %(default)s)",
    )
    storage = serve.add_mutually_exclusive_group()
    storage.add_argument(
        "--db",
        metavar="PATH",
        default="lfws.db",
        help="SQLite event log, created when missing (default: %(default)s)",
    )
    storage.add_argument(
        "--database",
        metavar="URL",
        type=_postgres_url,
        help=(
            "PostgreSQL event log instead, e.g. postgresql://user:password@host:5432/dbname"
            " (or set the password in PGPASSWORD); every node serving the same database"
            " broadcasts what the others store, so several can run behind a load balancer;"
            " needs the 'postgres' extra"
        ),
    )
    add(
        "--token",
        dest="tokens",
        type=_token,
        action="append",
        metavar="TOKEN",
        help="accept only clients presenting this token (repeatable; default: accept anyone)",
    )
    add(
        "--allowed-origin",
        dest="allowed_origins",
        action="append",
        metavar="ORIGIN",
        help="accept only handshakes from this Origin (repeatable; default: any origin)",
    )
    add(
        "--compression",
        action="store_true",
        help=(
            "accept permessage-deflate from clients that offer it (default: off);"
            " compressed messages inflate up to --max-message-size, 1009 beyond"
        ),
    )
    add("--tls-cert", metavar="FILE", help="PEM certificate chain; serve wss:// (with --tls-key)")
    add("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    add(
        "--log-level",
        type=str.upper,
        choices=_LOG_LEVELS,
        default="INFO",
        help="logging threshold on stderr (default: %(default)s)",
    )
    add(
        "--runtime",
        choices=sorted(_RUNTIMES),
        default="asyncio",
        help="async runtime to run on (default: %(default)s)",
    )
    limits = serve.add_argument_group("limits")
    for limit in _LIMITS:
        limits.add_argument(
            "--" + limit.field.replace("_", "-"),
            type=limit.parse,
            default=getattr(_DEFAULTS, limit.field),
            metavar=limit.metavar,
            help=f"{limit.help} (default: %(default)s)",
        )
    demo = commands.add_parser(
        "demo",
        help="watch two replicas sync through a server, in one process",
        description=(
            "Start a sync server (SQLite in a temporary directory) and two clients, A and B, "
            "and narrate: live sync with its latency, offline edits converging, a server "
            "restart losing nothing. Exits 0 once the replicas and the server agree."
        ),
    )
    demo.set_defaults(handler=_demo)
    return parser


# --- runtimes ------------------------------------------------------------------


class _Server(Protocol):
    @property
    def url(self) -> str: ...


class _Serve(Protocol):
    def __call__(
        self,
        *,
        event_log: EventLog,
        host: str,
        port: int,
        options: ServerOptions | None,
        authenticator: Authenticator | None,
        ssl: ssl.SSLContext | None,
    ) -> AbstractAsyncContextManager[_Server]: ...


_StopSignals = Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[int]]]]
"""Catch SIGINT/SIGTERM while entered; yields a function waiting for the first one."""


@dataclass(frozen=True, slots=True)
class _Runtime:
    serve: _Serve
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
    stop_signals: _StopSignals


@asynccontextmanager
async def _asyncio_stop_signals() -> AsyncIterator[Callable[[], Awaitable[int]]]:
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def stop(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        yield lambda: received
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _receiver_stop_signals(
    open_receiver: Callable[..., AbstractContextManager[AsyncIterator[int]]],
) -> _StopSignals:
    @asynccontextmanager
    async def stop_signals() -> AsyncIterator[Callable[[], Awaitable[int]]]:
        with open_receiver(*_STOP_SIGNALS) as received:
            yield received.__anext__

    return stop_signals


def _asyncio_runtime() -> _Runtime:
    from .asyncio import serve

    return _Runtime(serve, lambda main: asyncio.run(main()), _asyncio_stop_signals)


def _trio_runtime() -> _Runtime:
    import trio

    from .trio import serve

    return _Runtime(serve, trio.run, _receiver_stop_signals(trio.open_signal_receiver))


def _anyio_runtime() -> _Runtime:
    import anyio

    from .anyio import serve

    return _Runtime(serve, anyio.run, _receiver_stop_signals(anyio.open_signal_receiver))


_RUNTIMES: dict[str, Callable[[], _Runtime]] = {
    "asyncio": _asyncio_runtime,
    "trio": _trio_runtime,
    "anyio": _anyio_runtime,
}


# --- lfws serve ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Setup:
    host: str
    port: int
    options: ServerOptions
    authenticator: Authenticator
    tls: ssl.SSLContext | None
    event_log: EventLog


async def _run_server(setup: _Setup, runtime: _Runtime) -> None:
    # Signals are caught before the URL is printed (whoever reads it may stop
    # us at once) and until the shutdown is over (a second one is ignored).
    async with (
        aclosing(setup.event_log),
        runtime.stop_signals() as stop_signal,
        runtime.serve(
            event_log=setup.event_log,
            host=setup.host,
            port=setup.port,
            options=setup.options,
            authenticator=setup.authenticator,
            ssl=setup.tls,
        ) as server,
    ):
        print(f"listening on {server.url}", flush=True)
        signum = await stop_signal()
        logger.info("%s received: shutting down", signal.Signals(signum).name)
    logger.info("stopped")


def _load_runtime(name: str) -> _Runtime:
    try:
        return _RUNTIMES[name]()
    except ImportError as error:
        raise _CannotServe(f"the {name} runtime is unavailable: {error}") from None


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise _CannotServe("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as error:  # ssl.SSLError included
        raise _CannotServe(
            f"cannot load the TLS certificate {cert} with key {key}: {error.strerror or error}"
        ) from None
    return context


def _open_event_log(path: str) -> SqliteEventLog:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise _CannotServe(f"cannot create the database {path}: no directory {directory}")
    try:
        return SqliteEventLog(path)
    except StoreError as error:
        raise _CannotServe(str(error)) from None


def _open_shared_event_log(url: str) -> tuple[EventLog, str]:
    """Open the PostgreSQL log; return it and its name without the password."""
    try:
        from ._postgres import describe
        from .postgres_event_log import PostgresEventLog
    except ImportError as error:
        raise _CannotServe(f"--database: {error}") from None
    try:
        return PostgresEventLog(url), describe(url)
    except StoreError as error:
        # libpq's messages run over several lines; the CLI promises one.
        raise _CannotServe(" ".join(str(error).split())) from None


def _options(args: argparse.Namespace) -> ServerOptions:
    origins = args.allowed_origins
    limits: dict[str, Any] = {limit.field: getattr(args, limit.field) for limit in _LIMITS}
    return ServerOptions(
        path=args.path,
        allowed_origins=None if origins is None else frozenset(origins),
        compression=args.compression,
        **limits,
    )


def _sole_cause(error: BaseException) -> BaseException:
    # A runtime with structured concurrency reports a failure inside a group.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        runtime = _load_runtime(args.runtime)
        tls = _tls_context(args.tls_cert, args.tls_key)
        if args.database is None:
            event_log: EventLog = _open_event_log(args.db)
            where = args.db
        else:
            event_log, where = _open_shared_event_log(args.database)
    except _CannotServe as error:
        return _fail(str(error))
    if args.tokens:
        authenticator = token_authenticator(args.tokens)
    else:
        authenticator = allow_anyone
        logger.warning("no --token: every client is accepted")
    logger.info("event log %s, %s runtime", where, args.runtime)
    setup = _Setup(
        host=args.host,
        port=args.port,
        options=_options(args),
        authenticator=authenticator,
        tls=tls,
        event_log=event_log,
    )
    try:
        runtime.run(partial(_run_server, setup, runtime))
    except Exception as error:
        cause = _sole_cause(error)
        if not isinstance(cause, OSError):
            raise
        return _fail(f"cannot listen on {args.host}:{args.port}: {cause.strerror or cause}")
    return 0


# --- lfws demo -----------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level="WARNING", stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from ._demo import run

    return run()


def _fail(message: str) -> int:
    print(f"lfws serve: error: {message}", file=sys.stderr, flush=True)
    return _EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lfws`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
