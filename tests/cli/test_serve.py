"""``lfws serve``: a real server process, spoken to by the ``websockets`` library.

Each test starts ``python -m lfws_adapters.cli serve --port 0`` and reads the
URL from its first stdout line; the clients send the Dart protocol's raw JSON.
"""

from __future__ import annotations

import importlib.util
import json
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from lfws_adapters.cli import main
from lfws_adapters.hub import ServerOptions

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
RECEIVE_TIMEOUT = 5.0
URL_LINE = re.compile(r"listening on (wss?)://127\.0\.0\.1:(\d+)(/\S*)")

LIMITS = (
    "max_message_size",
    "max_batch_length",
    "max_connections",
    "handshake_timeout",
    "auth_timeout",
    "send_buffer_limit",
    "ping_interval",
    "ping_timeout",
    "page_size",
)


def runtime_param(name: str) -> Any:
    written = importlib.util.find_spec(f"lfws_adapters.{name}") is not None
    return pytest.param(
        name, marks=pytest.mark.skipif(not written, reason=f"lfws_adapters.{name} not written")
    )


RUNTIMES = [runtime_param(name) for name in ("asyncio", "trio", "anyio")]


def event(event_id: str, title: str) -> dict[str, Any]:
    return {
        "_event_id": event_id,
        "_operation": 0,
        "_created_at": "2024-05-01T12:00:00.000Z",
        "_data": {"title": title},
        "_data_id": f"todo-{event_id}",
    }


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT)


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lfws_adapters.cli", "serve", *args]


@contextmanager
def lfws_serve(tmp_path: Path, *args: str, db: Path | None = None) -> Iterator[Server]:
    """Run ``lfws serve --port 0`` until the block ends (then SIGTERM it)."""
    db = db or tmp_path / "lfws.db"
    stderr_path = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            serve_command("--port", "0", "--db", str(db), *args),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        match = URL_LINE.fullmatch(line.rstrip("\n"))
        assert match, f"first stdout line {line!r}; stderr:\n{stderr_path.read_text()}"
        yield Server(process, match[0].removeprefix("listening on "), int(match[2]), stderr_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=RECEIVE_TIMEOUT))
    assert isinstance(message, dict)
    return message


def authenticate(ws: ClientConnection, token: str) -> None:
    send(ws, type="auth", token=token)
    assert receive(ws) == {"type": "auth_success"}


def fetch_all(ws: ClientConnection) -> list[dict[str, Any]]:
    """Send ``request_all_events``; return the events received before ``sync_complete``."""
    send(ws, type="request_all_events")
    events: list[dict[str, Any]] = []
    while (message := receive(ws))["type"] != "sync_complete":
        assert message["type"] == "events"
        events += message["events"]
    return events


# --- the server process -----------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_first_line_is_the_url_then_dart_clients_sync(tmp_path: Path, runtime: str) -> None:
    with lfws_serve(tmp_path, "--runtime", runtime) as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/sync"
        assert server.port != 0
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as alice:
            authenticate(alice, "alice")
            with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as bob:
                authenticate(bob, "bob")
                send(alice, type="push_event", repository="todos", event=event("e1", "milk"))
                ack = receive(alice)
                assert ack == {"type": "ack", "eventIds": ["e1"], "repositories": {"todos": ["e1"]}}
                broadcast = receive(bob)
                assert broadcast["type"] == "events"
                assert [e["_event_id"] for e in broadcast["events"]] == ["e1"]
            (stored,) = fetch_all(alice)
            assert stored["_event_id"] == "e1"
            assert stored["_data"] == {"title": "milk"}
            assert stored["serverSequence"] == 1
        assert server.stop() == 0
    log = server.stderr()
    assert "WARNING lfws.cli: no --token: every client is accepted" in log
    assert len(re.findall(r"lfws\.server: 127\.0\.0\.1:\d+ connected", log)) == 2
    assert len(re.findall(r"lfws\.server: 127\.0\.0\.1:\d+ disconnected: ", log)) == 2


def test_a_custom_path_is_the_endpoint_and_others_are_not_found(tmp_path: Path) -> None:
    with lfws_serve(tmp_path, "--path", "/v1/sync") as server:
        assert server.url.endswith("/v1/sync")
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws:
            authenticate(ws, "anyone")
        with pytest.raises(Exception, match="404"):
            connect(server.url.replace("/v1/sync", "/sync"), open_timeout=RECEIVE_TIMEOUT)


def test_tokens_let_their_holders_in_and_keep_others_out(tmp_path: Path) -> None:
    with lfws_serve(tmp_path, "--token", "first", "--token", "second") as server:
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws:
            authenticate(ws, "second")
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws:
            send(ws, type="auth", token="guess")
            refusal = receive(ws)
            assert refusal["type"] == "error"
            assert "invalid or missing token" in refusal["message"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=RECEIVE_TIMEOUT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
    assert "no --token" not in server.stderr()


def test_healthz_answers_json(tmp_path: Path) -> None:
    with lfws_serve(tmp_path) as server:
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws:
            authenticate(ws, "anyone")
            send(ws, type="push_event", repository="notes", event=event("n1", "hello"))
            assert receive(ws)["type"] == "ack"
        url = f"http://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(url, timeout=RECEIVE_TIMEOUT) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            health = json.load(response)
    assert health["status"] == "ok"
    assert health["repositories"] == {"notes": 1}


def test_limit_flags_reach_the_server(tmp_path: Path) -> None:
    limits = ("--page-size", "1", "--max-message-size", "400", "--ping-interval", "off")
    with (
        lfws_serve(tmp_path, *limits) as server,
        connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws,
    ):
        authenticate(ws, "anyone")
        batch = [event("e1", "milk"), event("e2", "eggs")]
        send(ws, type="push_events_batch", repository="todos", events=batch)
        assert receive(ws)["eventIds"] == ["e1", "e2"]
        send(ws, type="request_events", repository="todos", afterSequence=0)
        pages = [receive(ws), receive(ws)]
        assert [[e["_event_id"] for e in page["events"]] for page in pages] == [["e1"], ["e2"]]
        assert receive(ws)["type"] == "sync_complete"
        send(ws, type="push_event", repository="todos", event=event("e3", "x" * 400))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECEIVE_TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


@pytest.mark.parametrize("flag", [True, False], ids=["--compression", "default"])
def test_compression_is_negotiated_only_with_the_flag(tmp_path: Path, flag: bool) -> None:
    args = ("--compression",) if flag else ()
    with (
        lfws_serve(tmp_path, *args) as server,
        # websockets offers permessage-deflate by default.
        connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws,
    ):
        assert len(ws.protocol.extensions) == int(flag)
        authenticate(ws, "anyone")
        send(ws, type="push_event", repository="todos", event=event("c1", "squeeze " * 500))
        assert receive(ws)["eventIds"] == ["c1"]
        assert [e["_data"]["title"] for e in fetch_all(ws)] == ["squeeze " * 500]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_clients_with_1001_and_events_survive_a_restart(
    tmp_path: Path, runtime: str, signum: int
) -> None:
    db = tmp_path / "events.db"
    with lfws_serve(tmp_path, "--runtime", runtime, db=db) as server:
        with connect(server.url, open_timeout=RECEIVE_TIMEOUT) as ws:
            authenticate(ws, "anyone")
            send(ws, type="push_event", repository="todos", event=event("e1", "milk"))
            assert receive(ws)["type"] == "ack"
            server.process.send_signal(signum)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=STOP_TIMEOUT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        assert server.process.wait(timeout=STOP_TIMEOUT) == 0
    log = server.stderr()
    assert f"{signal.Signals(signum).name} received: shutting down" in log
    assert "Traceback" not in log
    with (
        lfws_serve(tmp_path, "--runtime", runtime, db=db) as again,
        connect(again.url, open_timeout=RECEIVE_TIMEOUT) as ws,
    ):
        authenticate(ws, "anyone")
        assert [e["_event_id"] for e in fetch_all(ws)] == ["e1"]


def test_tls_serves_wss(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with lfws_serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        assert server.url == f"wss://127.0.0.1:{server.port}/sync"
        with connect(server.url, ssl=client_context, open_timeout=RECEIVE_TIMEOUT) as ws:
            authenticate(ws, "anyone")


def test_a_port_in_use_is_one_error_line_and_status_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            serve_command("--port", str(port), "--db", str(tmp_path / "lfws.db")),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"lfws serve: error: cannot listen on 127.0.0.1:{port}: " in result.stderr


def test_the_console_script_runs_the_command() -> None:
    script = Path(sys.executable).with_name("lfws")
    result = subprocess.run(
        [str(script), "serve", "--help"], capture_output=True, text=True, timeout=START_TIMEOUT
    )
    assert result.returncode == 0
    assert "--page-size" in result.stdout


# --- arguments, in process --------------------------------------------------------


def test_help_names_every_limit_with_its_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = ServerOptions()
    for field in LIMITS:
        flag = "--" + field.replace("_", "-")
        entry = text.split(f"{flag} ")[-1].split(" --")[0]
        assert f"(default: {getattr(defaults, field)})" in entry, flag
    for flag in ("--host", "--port", "--path", "--db", "--log-level", "--runtime"):
        entry = text.split(f"{flag} ")[-1].split(" --")[0]
        assert "(default: " in entry, flag


def test_without_a_command_the_help_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "serve" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--max-connections", "0"], "expected a positive integer, got '0'"),
        (["--page-size", "many"], "expected a positive integer, got 'many'"),
        (["--auth-timeout", "-1"], "expected a positive number of seconds, got '-1'"),
        (["--ping-timeout", "inf"], "expected a positive number of seconds, got 'inf'"),
        (["--ping-interval", "soon"], "expected a positive number of seconds, got 'soon'"),
        (["--port", "70000"], "expected a port number (0 to 65535), got '70000'"),
        (["--path", "sync"], "the path must start with '/', got 'sync'"),
        (["--token", ""], "a token must not be empty"),
        (["--log-level", "loud"], "invalid choice: 'LOUD'"),
        (["--runtime", "gevent"], "invalid choice: 'gevent'"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_db_in_a_missing_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "missing" / "lfws.db"
    assert main(["serve", "--port", "0", "--db", str(db)]) == 2
    assert capsys.readouterr().err == (
        f"lfws serve: error: cannot create the database {db}: no directory {db.parent}\n"
    )


def test_a_file_that_is_not_an_event_log_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database, just notes\n" * 100)
    assert main(["serve", "--port", "0", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lfws serve: error: {db}")
    assert err.count("\n") == 1


def test_unreadable_tls_files_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = ["serve", "--db", str(tmp_path / "lfws.db"), "--tls-cert", str(cert)]
    assert main([*args, "--tls-key", str(key)]) == 2
    assert capsys.readouterr().err == (
        f"lfws serve: error: cannot load the TLS certificate {cert} with key {key}: "
        "No such file or directory\n"
    )
    assert main(args) == 2
    assert capsys.readouterr().err == "lfws serve: error: --tls-cert and --tls-key go together\n"
    assert not (tmp_path / "lfws.db").exists()
