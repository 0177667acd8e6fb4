"""The app proxy for real: a demo app in one uvicorn, broker.apps.forward in another (as the broker
serves), httpx and websockets clients in front; addresses `PORT--demo--alice.localhost`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, Ping, Pong, Request, TextMessage

from tests.support.apps import Served, served

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
QUICK_TIMEOUT = 1.0  # the response timeout of the proxy in the silent-app test
# A proxy that held a whole body would grow by at least its size; streaming keeps ~a chunk per
# direction, plus what the allocator keeps around.
MEMORY_ALLOWANCE_KIB = 24 * 1024


@pytest.fixture(scope="module")
def app() -> Iterator[Served]:
    with served("app") as s:
        yield s


@pytest.fixture(scope="module")
def proxy() -> Iterator[Served]:
    with served("proxy") as s:  # the default timeouts
        yield s


def app_host(port: int, proxy: Served) -> str:
    return f"{port}--demo--alice.localhost:{proxy.port}"


@pytest.fixture
def through(app: Served, proxy: Served) -> Iterator[httpx.Client]:
    """A client that asks the proxy for the demo app's address."""
    with httpx.Client(base_url=proxy.url, headers={"host": app_host(app.port, proxy)}, timeout=30) as client:
        yield client


@pytest.fixture
def direct(app: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=60) as client:
        yield client


# -- pages, bodies, memory ------------------------------------------------------------------


def test_the_apps_page_comes_through(through: httpx.Client) -> None:
    response = through.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert "<h1>demo app</h1>" in response.text
    assert len(response.headers.get_list("date")) == 1


def test_head_keeps_the_length_and_sends_no_body(through: httpx.Client) -> None:
    response = through.head("/bytes", params={"n": 1000, "sized": 1})
    assert response.status_code == 200
    assert response.headers["content-length"] == "1000"
    assert response.content == b""


def test_a_100_mib_download_streams_with_bounded_memory(through: httpx.Client, proxy: Served) -> None:
    assert through.get("/bytes", params={"n": MiB}).status_code == 200  # warm up
    before = proxy.peak_rss_kib()
    total = 0
    with through.stream("GET", "/bytes", params={"n": 100 * MiB}) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers  # chunked on both legs
        for chunk in response.iter_raw():
            total += len(chunk)
    assert total == 100 * MiB
    growth = proxy.peak_rss_kib() - before
    assert growth < MEMORY_ALLOWANCE_KIB, f"the proxy's peak RSS grew by {growth} KiB"


def test_a_sized_download_keeps_its_length(through: httpx.Client) -> None:
    response = through.get("/bytes", params={"n": 3 * MiB + 7, "sized": 1})
    assert response.headers["content-length"] == str(3 * MiB + 7)
    assert len(response.content) == 3 * MiB + 7


def test_the_response_flows_before_the_app_has_finished(through: httpx.Client, direct: httpx.Client) -> None:
    # The app sends one chunk and then waits to be released: the chunk must arrive first.
    with through.stream("GET", "/held") as response:
        chunks = response.iter_raw()
        received = b""
        while b"first chunk;" not in received:
            received += next(chunks)
        assert direct.post("/release").status_code == 200
        received += b"".join(chunks)
    assert received == b"first chunk;the rest"


def test_a_chunked_upload_streams_with_bounded_memory(
    through: httpx.Client, direct: httpx.Client, proxy: Served
) -> None:
    first = os.urandom(MiB)
    rest = os.urandom(MiB) * 63
    digest = hashlib.sha256(first + rest).hexdigest()

    def body() -> Iterator[bytes]:
        yield first
        # The app must have the first chunk while the rest is still here.
        assert direct.get("/upload-started").text == "started"
        for offset in range(0, len(rest), MiB):
            yield rest[offset : offset + MiB]

    before = proxy.peak_rss_kib()
    response = through.post("/upload", content=body())
    assert response.status_code == 200
    assert response.json() == {"bytes": 64 * MiB, "sha256": digest}
    growth = proxy.peak_rss_kib() - before
    assert growth < MEMORY_ALLOWANCE_KIB, f"the proxy's peak RSS grew by {growth} KiB"


def test_a_sized_upload_is_echoed(through: httpx.Client) -> None:
    payload = os.urandom(MiB + 3)
    response = through.post("/echo", content=payload)
    assert response.status_code == 200
    assert response.content == payload


# -- headers --------------------------------------------------------------------------------


def seen_by_app(client: httpx.Client, **headers: str) -> list[tuple[str, str]]:
    response = client.get("/headers", headers=headers)
    assert response.status_code == 200
    return [(n, v) for n, v in response.json()["headers"]]


def test_the_app_gets_localhost_and_forwarding_fields_and_no_hop_by_hop(
    through: httpx.Client, app: Served, proxy: Served
) -> None:
    seen = seen_by_app(
        through,
        connection="keep-alive, X-Custom-Hop",
        **{"x-custom-hop": "1", "keep-alive": "timeout=5", "te": "trailers", "proxy-authorization": "Basic eA=="},
        **{"x-forwarded-host": "evil.example.com", "x-real-ip": "6.6.6.6", "forwarded": "for=6.6.6.6"},
    )
    fields = dict(seen)
    public = app_host(app.port, proxy)
    assert fields["host"] == f"localhost:{app.port}"
    assert fields["x-forwarded-host"] == public
    assert fields["x-forwarded-proto"] == "http"
    assert fields["x-forwarded-for"] == "127.0.0.1"
    assert fields["forwarded"] == f'for=127.0.0.1;host="{public}";proto=http'
    assert fields["connection"] == "close"  # the proxy's own: one request per stream
    names = [n for n, _ in seen]
    for gone in ("x-custom-hop", "keep-alive", "te", "proxy-authorization", "x-real-ip"):
        assert gone not in names
    assert names.count("x-forwarded-host") == 1
    assert names.count("forwarded") == 1


def test_the_broker_cookie_and_token_never_reach_the_app(through: httpx.Client) -> None:
    seen = seen_by_app(
        through,
        cookie="pair_session=SECRET1; theme=dark; __pair_app=SECRET2; __Host-pair_app_state=SECRET3",
        authorization="Bearer pair_st_SECRET4",
    )
    assert "SECRET" not in json.dumps(seen)
    assert ("cookie", "theme=dark") in seen


def test_responses_are_cleaned_for_the_browser(through: httpx.Client, proxy: Served, app: Served) -> None:
    redirect = through.get("/redirect")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"http://{app_host(app.port, proxy)}/landing?x=1"
    cookies = through.get("/cookies").headers.get_list("set-cookie")
    assert cookies == ["theme=dark; Path=/; HttpOnly", "lang=en"]
    hop = through.get("/hop")
    assert hop.text == "hop"
    assert "x-app-hop" not in hop.headers
    assert "keep-alive" not in hop.headers


# -- failures -------------------------------------------------------------------------------


@contextmanager
def raw_server(handle: Callable[[socket.socket], object]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 whose connections `handle` serves, one thread each."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(conn,), daemon=True).start()

    def _serve(conn: socket.socket) -> None:
        with conn:
            handle(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(5)


@contextmanager
def unused_port() -> Iterator[int]:
    """A port nothing listens on (held, so nobody else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def get(proxy: Served, port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"{proxy.url}{path}", headers={"host": app_host(port, proxy)}, timeout=30)


def test_an_address_that_names_no_app_gets_a_404_page(proxy: Served) -> None:
    response = httpx.get(f"{proxy.url}/", headers={"host": f"8080--demo_x--alice.localhost:{proxy.port}"})
    assert response.status_code == 404
    assert "This address names no shared port." in response.text


def test_nothing_listening_gets_a_502_page(proxy: Served) -> None:
    with unused_port() as port:
        response = get(proxy, port)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f"Nothing is listening on port {port}." in response.text


def test_an_app_that_hangs_up_gets_a_502_page(proxy: Served) -> None:
    with raw_server(lambda conn: read_request(conn) and None) as port:
        response = get(proxy, port)
    assert response.status_code == 502
    assert "The app closed the connection without answering." in response.text


def test_an_app_that_answers_garbage_gets_a_502_page(proxy: Served) -> None:
    def garbage(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    with raw_server(garbage) as port:
        response = get(proxy, port)
    assert response.status_code == 502
    assert "not valid HTTP/1.1" in response.text


def test_an_app_that_never_answers_gets_a_504_page() -> None:
    release = threading.Event()

    def silent(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(30)

    with served("proxy", str(QUICK_TIMEOUT)) as quick, raw_server(silent) as port:
        try:
            response = get(quick, port)
        finally:
            release.set()
    assert response.status_code == 504
    assert f"sent no response within {QUICK_TIMEOUT:g} s" in response.text


def test_a_browser_that_leaves_mid_response_frees_the_apps_connection(proxy: Served) -> None:
    app_saw_the_end = threading.Event()

    def endless(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        conn.settimeout(30)
        if conn.recv(1) == b"":  # the proxy closed its side: the browser is gone
            app_saw_the_end.set()

    with raw_server(endless) as port:
        with httpx.stream("GET", f"{proxy.url}/", headers={"host": app_host(port, proxy)}, timeout=30) as response:
            assert next(response.iter_raw()) == b"first"
        # Leaving the block closed the browser's connection mid-body.
        assert app_saw_the_end.wait(10)


# -- WebSockets -----------------------------------------------------------------------------


def ws_connect(proxy: Served, port: int, path: str, **kwargs: Any) -> ClientConnection:
    """A WebSocket to the app at `port` through the proxy (the URL's host is only the Host field)."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    connection: ClientConnection = connect(f"ws://{app_host(port, proxy)}{path}", sock=sock, open_timeout=30, **kwargs)
    return connection


def test_websocket_echo_with_subprotocol_and_the_apps_headers(app: Served, proxy: Served) -> None:
    with ws_connect(proxy, app.port, "/ws-headers", subprotocols=["chat", "other"],
                    additional_headers={"cookie": "pair_session=SECRET; theme=dark"}) as ws:  # fmt: skip
        assert ws.subprotocol == "chat"
        assert ws.response is not None
        assert ws.response.headers["x-app-accept"] == "yes"
        assert ws.response.headers["set-cookie"] == "ws=1"  # host-only, as every app cookie
        seen = dict(json.loads(ws.recv(timeout=10))["headers"])
        assert seen["host"] == f"localhost:{app.port}"
        assert seen["cookie"] == "theme=dark"
        assert seen["x-forwarded-host"] == app_host(app.port, proxy)
        assert seen["sec-websocket-protocol"] == "chat, other"
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=10) == b"\x00\xffbinary"


def test_the_apps_close_code_and_reason_reach_the_browser(app: Served, proxy: Served) -> None:
    with ws_connect(proxy, app.port, "/ws") as ws:
        ws.send("close:4001:bye now")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye now")


def test_the_browsers_close_code_and_reason_reach_the_app(app: Served, proxy: Served, direct: httpx.Client) -> None:
    with ws_connect(proxy, app.port, "/ws") as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
        ws.close(4002, "client bye")
    assert {"code": 4002, "reason": "client bye"} in direct.get("/closes").json()


def test_a_message_too_big_closes_with_1009(app: Served, proxy: Served) -> None:
    with ws_connect(proxy, app.port, "/ws", max_size=None) as ws:
        ws.send("big:100000")
        assert len(ws.recv(timeout=10)) == 100000
        ws.send(f"big:{17 * MiB}")  # above the proxy's 16 MiB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_an_app_refusing_the_upgrade_is_relayed(app: Served, proxy: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(proxy, app.port, "/ws-refuse")
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["x-app-reason"] == "no sockets"
    assert response.headers["location"] == f"http://{app_host(app.port, proxy)}/login"
    assert "set-cookie" not in response.headers  # the app cannot set the proxy's cookie
    assert bytes(response.body or b"") == b"refused by the app"


def test_a_websocket_to_nothing_gets_the_502_page(proxy: Served) -> None:
    with unused_port() as port, pytest.raises(InvalidStatus) as refused:
        ws_connect(proxy, port, "/ws")
    assert refused.value.response.status_code == 502
    assert b"Nothing is listening on port" in bytes(refused.value.response.body or b"")


def test_the_apps_pings_are_answered(proxy: Served) -> None:
    def ping_then_report(conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while not any(isinstance(e, Request) for e in _receive(conn, ws)):
            pass
        conn.sendall(ws.send(AcceptConnection()) + ws.send(Ping(b"are you there")))
        while True:
            events = _receive(conn, ws)
            pongs = [e for e in events if isinstance(e, Pong)]
            if pongs:
                conn.sendall(ws.send(TextMessage(data=f"pong: {bytes(pongs[0].payload).decode()}")))
                return

    with raw_server(ping_then_report) as port, ws_connect(proxy, port, "/ws") as ws:
        assert ws.recv(timeout=10) == "pong: are you there"


def _receive(conn: socket.socket, ws: WSConnection) -> list[Event]:
    conn.settimeout(10)
    ws.receive_data(conn.recv(65536))
    return list(ws.events())


def test_an_app_that_vanishes_closes_the_browser_with_1014(proxy: Served) -> None:
    def accept_then_vanish(conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(conn.recv(65536))
            if any(isinstance(e, Request) for e in ws.events()):
                break
        conn.sendall(ws.send(AcceptConnection()))
        conn.shutdown(socket.SHUT_RDWR)

    with (
        raw_server(accept_then_vanish) as port,
        ws_connect(proxy, port, "/ws") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1014, "the app's connection ended")
