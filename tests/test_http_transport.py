"""The services' clients' network transport (`providers.http._transport`), over real sockets: the
bytes a server receives, kept-alive connections and their limits, what a server can do wrong in
the middle of an exchange, and TLS. The providers over this transport, end to end against the
fake services, are `test_http_providers.py` and `test_services_e2e.py`."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from genfactory.providers.http import _transport
from genfactory.providers.http._session import ssl_context
from genfactory.providers.http._transport import HTTP11Transport

Handler = Callable[["RawServer", socket.socket, int], None]


class RawServer:
    """A loopback TCP server whose every connection is handed to `handler(server, sock, n)` (n
    counts connections from 0) in a thread of its own: the test scripts the bytes on the wire."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[tuple[int, bytes, dict[str, str], bytes]] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            n = self.connections
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, n), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, n: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.handler(self, sock, n)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    def read_request(self, sock: socket.socket, n: int) -> tuple[str, dict[str, str], bytes]:
        """One request from `sock` (head, headers, body; chunked bodies decoded), recorded."""
        reader = sock.makefile("rb")
        head = reader.readline().decode("latin-1").rstrip("\r\n")
        if not head:
            raise ConnectionAbortedError("the client closed the connection")
        headers: dict[str, str] = {}
        raw_headers: list[str] = []
        while line := reader.readline().decode("latin-1").rstrip("\r\n"):
            name, _, value = line.partition(":")
            raw_headers.append(name.lower())
            headers[name.lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(reader.readline().strip(), 16):
                body += reader.read(size)
                reader.readline()
            reader.readline()
        else:
            body = reader.read(int(headers.get("content-length", "0")))
        headers["_names"] = ",".join(raw_headers)
        self.requests.append((n, head.encode(), headers, body))
        return head, headers, body

    def close(self) -> None:
        self._listener.close()


def answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def client(
    timeout: float | httpx.Timeout = 5.0, context: ssl.SSLContext | None = None
) -> httpx.Client:
    return httpx.Client(
        transport=HTTP11Transport(context or ssl_context()), timeout=httpx.Timeout(timeout)
    )


def keep_answering(body: bytes = b'{"ok": true}') -> Handler:
    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        while True:
            srv.read_request(sock, n)
            sock.sendall(answer(body, "Content-Type: application/json"))

    return handler


def test_the_server_receives_the_request_httpx_built_and_one_connection_carries_them_all(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(keep_answering())
    with client() as http:
        base = f"http://127.0.0.1:{server.port}"
        posted = http.post(
            f"{base}/v1/chat?x=1&y=%20", json={"prompt": "fox"}, headers={"X-Key": "k"}
        )
        uploaded = http.post(
            f"{base}/upload", files={"image_file": ("a.png", b"\x89PNG", "image/png")}
        )
        streamed = http.post(f"{base}/stream", content=iter([b"ab", b"cd"]))
        got = http.get(f"{base}/poll")
    assert [r.json() for r in (posted, uploaded, streamed, got)] == [{"ok": True}] * 4
    assert posted.http_version == "HTTP/1.1" and posted.reason_phrase == "OK"
    assert server.connections == 1
    (_, head, headers, body), (_, _, up_headers, up_body), (_, _, st_headers, st_body) = (
        server.requests[:3]
    )
    assert head == b"POST /v1/chat?x=1&y=%20 HTTP/1.1"
    assert json.loads(body) == {"prompt": "fox"}
    assert headers["content-length"] == str(len(body))
    assert headers["host"] == f"127.0.0.1:{server.port}" and headers["x-key"] == "k"
    assert headers["content-type"] == "application/json"
    names = headers["_names"].split(",")
    assert len(names) == len(set(names)), names  # no header sent twice (Host, Accept-Encoding)
    assert "identity" not in headers["accept-encoding"]
    assert up_headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="image_file"; filename="a.png"' in up_body and b"\x89PNG" in up_body
    assert st_headers["transfer-encoding"] == "chunked" and st_body == b"abcd"


def test_a_connection_the_server_closed_or_kept_too_long_is_not_reused(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        srv.read_request(sock, n)
        sock.sendall(answer(b"first"))  # kept alive by the headers, then closed idle at once
        if n == 0:
            return
        while True:
            srv.read_request(sock, n)
            sock.sendall(answer(b"more"))

    server = serve(handler)
    url = f"http://127.0.0.1:{server.port}/"
    with client() as http:
        assert http.get(url).content == b"first"
        time.sleep(0.2)  # the server's close has arrived
        assert http.get(url).content == b"first"  # not an error: a fresh connection
        assert http.get(url).content == b"more"  # and that one is kept
        assert server.connections == 2
        monkeypatch.setattr(_transport, "KEEPALIVE_EXPIRY", 0.05)
        time.sleep(0.15)
        assert http.get(url).content == b"first"  # idle past the expiry: not reused
    assert server.connections == 3


def test_chunked_and_compressed_answers_are_decoded_and_the_connection_kept(
    serve: Callable[..., RawServer],
) -> None:
    packed = gzip.compress(json.dumps({"title": "Red fox"}).encode())

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        while True:
            srv.read_request(sock, n)
            head = (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            )
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (packed[:7], packed[7:]))
            sock.sendall(head + chunks + b"0\r\n\r\n")

    server = serve(handler)
    with client() as http:
        for _ in range(2):
            assert http.get(f"http://127.0.0.1:{server.port}/").json() == {"title": "Red fox"}
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        answer(b"0123456789" * 10)[:-90],  # Content-Length 100, 10 bytes sent
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nshort",
        b"",  # hung up without a word
        b"SMTP ready\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    ],
    ids=["short-body", "short-chunk", "no-answer", "not-http", "unasked-upgrade"],
)
def test_an_answer_cut_short_or_broken_is_an_error_and_the_next_request_works(
    serve: Callable[..., RawServer], reply: bytes
) -> None:

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        srv.read_request(sock, n)
        if n == 0:
            sock.sendall(reply)
            return
        sock.sendall(answer(b"whole"))

    server = serve(handler)
    url = f"http://127.0.0.1:{server.port}/"
    with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(url)
        assert http.get(url).content == b"whole"
    assert server.connections == 2


def test_a_silent_server_is_a_read_timeout_and_a_closed_port_a_connect_error(
    serve: Callable[..., RawServer],
) -> None:

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        srv.read_request(sock, n)
        time.sleep(3)

    server = serve(handler)
    started = time.monotonic()
    with client(timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.get(f"http://127.0.0.1:{server.port}/")
    assert time.monotonic() - started < 2
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    closed_port = unused.getsockname()[1]
    unused.close()  # bound, never listening: the connection is refused
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{closed_port}/")
    with client() as http, pytest.raises(httpx.UnsupportedProtocol):
        http.get("ftp://127.0.0.1/file")


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `name`: the server's context, and a client's trusting it."""
    crypto = pytest.importorskip("cryptography", reason="cryptography comes with Prefect")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                if name == "localhost"
                else [x509.DNSName(name)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cadata=pem.decode())
    return server, trusting


def test_https_checks_the_certificate_and_the_host_name_and_keeps_the_connection(
    serve: Callable[..., RawServer], tmp_path: Path
) -> None:
    server_tls, trusting = _certificate(tmp_path, "localhost")
    server = serve(keep_answering(b'{"secure": true}'), tls=server_tls)
    with client(context=trusting) as http:
        for _ in range(2):
            assert http.get(f"https://localhost:{server.port}/").json() == {"secure": True}
    assert server.connections == 1
    (_, head, headers, _), *_ = server.requests
    assert head == b"GET / HTTP/1.1" and headers["host"] == f"localhost:{server.port}"

    # Not trusted by the system's certificates: refused before a byte of the request is sent.
    with client() as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get(f"https://localhost:{server.port}/")
    assert len(server.requests) == 2

    # Trusted, but issued to another host name: refused as well.
    (tmp_path / "other").mkdir()
    other_tls, other_trusting = _certificate(tmp_path / "other", "service.example")
    other = serve(keep_answering(), tls=other_tls)
    with client(context=other_trusting) as http, pytest.raises(httpx.ConnectError, match="match"):
        http.get(f"https://localhost:{other.port}/")
    assert other.requests == []


# -- where http.client and httpx's own transport differ ---------------------------------------


def test_informational_answers_before_the_final_one_are_skipped(
    serve: Callable[..., RawServer],
) -> None:

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        while True:
            srv.read_request(sock, n)
            early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            processing = b"HTTP/1.1 102 Processing\r\n\r\n"
            sock.sendall(early + processing + answer(b"final"))

    server = serve(handler)
    with client() as http:
        for _ in range(2):
            got = http.get(f"http://127.0.0.1:{server.port}/")
            assert (got.status_code, got.content) == (200, b"final")
    assert server.connections == 1


def test_a_header_byte_outside_ascii_is_read_as_sent(serve: Callable[..., RawServer]) -> None:

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        while True:
            srv.read_request(sock, n)
            disposition = 'Content-Disposition: attachment; filename="caf\xe9.png"'
            head = f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{disposition}\r\n\r\n"
            sock.sendall(head.encode("latin-1") + b"ok")

    server = serve(handler)
    with client() as http:
        for _ in range(2):
            got = http.get(f"http://127.0.0.1:{server.port}/image")
            assert got.content == b"ok"
            assert got.headers["content-disposition"].endswith('filename="caf\xe9.png"')
    assert server.connections == 1


def test_an_answer_sent_while_the_upload_was_still_going_out_is_returned(
    serve: Callable[..., RawServer],
) -> None:
    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        reader = sock.makefile("rb")
        while reader.readline() not in (b"\r\n", b""):
            pass  # the head only: the body is refused unread, as an upload over a quota is
        sock.sendall(answer(b'{"errors": [{"title": "File too large"}]}', status="413 Too Large"))
        time.sleep(0.2)

    server = serve(handler)
    with client() as http:
        got = http.post(f"http://127.0.0.1:{server.port}/removebg", content=b"x" * 16_000_000)
    assert got.status_code == 413 and got.json()["errors"][0]["title"] == "File too large"


def test_the_write_timeout_applies_to_each_piece_of_a_large_body(
    serve: Callable[..., RawServer],
) -> None:
    received: list[int] = []

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        reader = sock.makefile("rb")
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        got = 0
        while got < length:  # a slow reader: the whole body takes well over the timeout
            got += len(reader.read(min(128 * 1024, length - got)))
            time.sleep(0.04)
        received.append(got)
        sock.sendall(answer(b"stored"))

    server = serve(handler)
    body = b"y" * 12_000_000
    with client(timeout=httpx.Timeout(10.0, write=0.5)) as http:
        got = http.post(f"http://127.0.0.1:{server.port}/upload", content=body)
    assert got.content == b"stored" and received == [len(body)]


def test_an_empty_chunked_body_still_ends_with_its_last_chunk(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(keep_answering())
    with client(timeout=2.0) as http:
        got = http.post(f"http://127.0.0.1:{server.port}/", content=iter([]))
    assert got.json() == {"ok": True}
    (_, _, headers, body), *_ = server.requests
    assert headers["transfer-encoding"] == "chunked" and body == b""


def test_a_header_that_is_not_valid_http_is_refused_without_quoting_it(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(keep_answering())
    with client() as http, pytest.raises(httpx.LocalProtocolError) as refused:
        http.get(
            f"http://127.0.0.1:{server.port}/",
            headers={"Authorization": "Bearer sk-secret-123\r\nX-Injected: 1"},
        )
    chain = [refused.value, refused.value.__cause__, refused.value.__context__]
    assert not any("sk-secret-123" in str(e) for e in chain if e is not None)
    assert server.requests == []  # nothing went out


def test_idle_connections_to_any_origin_are_closed_once_expired(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = threading.Event()

    def handler(srv: RawServer, sock: socket.socket, n: int) -> None:
        srv.read_request(sock, n)
        sock.sendall(answer(b"a"))
        try:
            srv.read_request(sock, n)
        except ConnectionAbortedError:
            closed.set()  # the client hung up the idle connection

    first = serve(handler)
    other = serve(keep_answering())
    monkeypatch.setattr(_transport, "KEEPALIVE_EXPIRY", 0.05)
    with client() as http:
        assert http.get(f"http://127.0.0.1:{first.port}/").content == b"a"
        time.sleep(0.15)
        http.get(f"http://127.0.0.1:{other.port}/")  # another origin's request
        assert closed.wait(2), "the expired connection to the first origin stayed open"


def test_a_proxy_from_the_environment_carries_the_services_requests(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from genfactory.config import Settings
    from genfactory.providers.http._client import ServiceClient
    from genfactory.providers.registry import ProviderContext

    proxy = serve(keep_answering(b'{"via": "proxy"}'))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    service = ServiceClient(
        ProviderContext(settings=Settings()), "openai", base_url="http://service.invalid/v1"
    )
    try:
        got = service.call("GET", "/models", parse=lambda r: r.json(), authenticated=False)
    finally:
        service.close()
    assert got == {"via": "proxy"}
    (_, head, headers, _), *_ = proxy.requests
    assert head == b"GET http://service.invalid/v1/models HTTP/1.1"
    assert headers["host"] == "service.invalid"


def test_a_service_request_with_an_invalid_header_is_a_bad_request_sent_nowhere(
    serve: Callable[..., RawServer],
) -> None:
    from genfactory.config import Settings
    from genfactory.errors import BadRequest
    from genfactory.providers.http._client import ServiceClient
    from genfactory.providers.registry import ProviderContext

    server = serve(keep_answering())
    ctx = ProviderContext(settings=Settings())
    service = ServiceClient(ctx, "openai", base_url=f"http://127.0.0.1:{server.port}/v1")
    try:
        with pytest.raises(BadRequest, match="not valid HTTP") as refused:
            service.call(
                "POST",
                "/images/generations",
                parse=lambda r: r.json(),
                headers={"X-Trace": "sk-secret-123\r\nX-Injected: 1"},
                paid=True,
            )
    finally:
        service.close()
    assert "sk-secret-123" not in str(refused.value)
    assert server.requests == []
    usage = ctx.usage.snapshot()["openai"]
    assert usage["calls"] == 1 and "ambiguous_creates" not in usage  # not retried, not charged
