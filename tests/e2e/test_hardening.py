"""An oversized body's 413 reaches the client whatever its HTTP library, on a real server.

Python's urllib and http.client send the whole body before they read: when the server closed
as soon as it had answered, the unread rest of a 2 MB body made the kernel reset the
connection, and urllib saw a broken pipe or a reset instead of the 413 (2 runs in 3). The
server now reads and discards the rest, up to ``SIGNPOST_MAX_DRAIN_BYTES``, before it answers.

Two real servers on loopback sockets, uvicorn with each of its HTTP implementations: httptools
(its default, as deployed) and h11, each in a thread of this process (the fuzzer,
tests/e2e/test_fuzz.py, runs one in its own process).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.api import create_app
from service.context import Services
from service.repositories.keys import create_key
from service.settings import Settings
from tests.e2e.conftest import free_port

TWO_MB = 2 << 20
BODY = json.dumps({"indicator": "joint_exercise", "date": "2025-06-01",
                   "note": "x" * TWO_MB}).encode()
RUNS = 20


def settings_for(var_dir: Path) -> Settings:
    return Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir / 'signpost.db'}",
                    scheduler=False, worker="inline")


class ThreadServer:
    """uvicorn (``http``: its HTTP implementation) serving the app in a daemon thread."""

    def __init__(self, var_dir: Path, http: str):
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        settings = settings_for(var_dir)
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                                    port=port, http=http, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no server"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Server:
    base_url: str
    analyst: dict[str, str]  # a chunked body is read by the route, after the key is checked


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request, tmp_path_factory) -> Iterator[Server]:
    var_dir = tmp_path_factory.mktemp(request.param)
    thread = ThreadServer(var_dir, http=request.param)  # its lifespan migrated the database
    try:
        services = Services.build(settings_for(var_dir), role="api")
        try:
            key = create_key(services.store, role="analyst", name="ana")
        finally:
            services.close()
        yield Server(thread.base_url, {"Authorization": f"Bearer {key}"})
    finally:
        thread.stop()


@pytest.fixture
def base_url(server: Server) -> str:
    return server.base_url


def refused(status: int, body: bytes) -> None:
    assert status == 413, body[:200]
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and "2,097" in error["message"], error


def test_urllib_reads_the_413(base_url):
    """urllib sends all 2 MB, then reads: the 413, every time (it used to be a broken pipe)."""
    for _ in range(RUNS):
        request = urllib.request.Request(f"{base_url}/v1/observations", data=BODY,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        refused(caught.value.code, caught.value.read())
        assert caught.value.headers["X-Content-Type-Options"] == "nosniff"


def test_http_client_reads_the_413_and_keeps_its_connection(base_url):
    """The body was read to its end, so the connection stays usable for the next request."""
    connection = http.client.HTTPConnection(base_url.removeprefix("http://"), timeout=30)
    try:
        for _ in range(RUNS):
            connection.request("POST", "/v1/observations", body=BODY,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            refused(response.status, response.read())
            assert response.getheader("Connection") != "close"
        connection.request("GET", "/healthz")  # the same socket
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    finally:
        connection.close()


def test_a_chunked_body_is_refused_once_past_the_limit_and_read_to_its_end(server):
    connection = http.client.HTTPConnection(server.base_url.removeprefix("http://"), timeout=30)
    try:
        for _ in range(5):
            chunks = (BODY[i:i + 65536] for i in range(0, len(BODY), 65536))
            connection.request("POST", "/v1/observations", body=chunks, encode_chunked=True,
                               headers={"Content-Type": "application/json", **server.analyst})
            response = connection.getresponse()
            assert response.status == 413
            assert json.loads(response.read())["error"]["code"] == "payload_too_large"
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_httpx_reads_the_413(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(5):
            response = client.post("/v1/observations", content=BODY,
                                   headers={"Content-Type": "application/json"})
            refused(response.status_code, response.content)


def _answer_to_headers(base_url: str, headers: str) -> bytes:
    """Send only a request's head and read the whole answer (until the server closes)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(headers.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_body_past_the_drain_bound_is_refused_at_once_and_the_connection_closed(base_url):
    """64 MiB announced: answered before a byte of it is sent, then closed (not read)."""
    answer = _answer_to_headers(base_url, "POST /v1/observations HTTP/1.1\r\nHost: x\r\n"
                                          "Content-Type: application/json\r\n"
                                          f"Content-Length: {64 << 20}\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_expect_100_continue_gets_the_413_instead_of_the_100(base_url):
    answer = _answer_to_headers(base_url, "POST /v1/observations HTTP/1.1\r\nHost: x\r\n"
                                          "Content-Type: application/json\r\n"
                                          f"Content-Length: {TWO_MB}\r\n"
                                          "Expect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]  # no "100 Continue" first
    assert b"connection: close" in answer.partition(b"\r\n\r\n")[0].lower()
