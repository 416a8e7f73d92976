"""`HTTP11Transport`: the services' clients' way to the network, HTTP/1.1 over `http.client`.

httpx's own transport (httpcore and h11) spends two to three times the CPU of the whole
exchange over `http.client` on the same kept-alive connection: ~1.6 against ~0.5 ms per
request on a slow 2-core VM, and at 32 slot threads ~2.2 against ~0.4 ms (benchmarks/README.md,
twelfth round). A job sends about 7.5 requests per image. The httpx client above this transport
is unchanged: request building, redirects, decoding, the exceptions `ServiceClient` maps.

Kept alive like httpx's default: a connection idle for more than `KEEPALIVE_EXPIRY` seconds, or
one the server has already closed (its socket reads as ready), is never reused. Where httpx's
own transport differs from `http.client`, this one does as httpx's: every informational answer
is skipped (not only 100), an answer sent while the body was still going out is read and
returned, each piece of a large body has its own write timeout, hosts are connected to by their
IDNA name. A client that must go through a proxy from the environment does not use this
transport at all (`_session.new_client` leaves those to httpx).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx

#: Seconds an idle connection is kept for reuse (httpx's default `keepalive_expiry`).
KEEPALIVE_EXPIRY = 5.0
#: Idle connections kept per origin; a slot thread's own client needs one.
MAX_IDLE_PER_ORIGIN = 8
_CHUNK = 64 * 1024

_Origin = tuple[str, str, int]


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return {key: timeout.get(key) for key in ("connect", "read", "write")}


class _Body(httpx.SyncByteStream):
    """A response body read from its connection as it is iterated; the connection goes back to
    the transport's idle list once the body was read to its end (and the exchange left it
    `reusable`), and is closed otherwise."""

    def __init__(
        self,
        transport: HTTP11Transport,
        origin: _Origin,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        request: httpx.Request,
        reusable: bool,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: http.client.HTTPConnection | None = connection
        self._response = response
        self._request = request
        self._reusable = reusable
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with _Mapped(self._request, httpx.ReadTimeout, httpx.ReadError):
                chunk = self._response.read(_CHUNK)
            if not chunk:
                break
            yield chunk
        missing = self._response.length
        if missing:  # `read(n)` ends quietly where the connection did, short of Content-Length
            raise httpx.RemoteProtocolError(
                f"the connection closed {missing} bytes before the end of the answer",
                request=self._request,
            )
        self._complete = True

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        response = self._response
        if self._reusable and self._complete and response.isclosed() and not response.will_close:
            self._transport._release(self._origin, connection)
        else:
            self._response.close()
            connection.close()


class _Mapped:
    """Map what `http.client` and the socket raise to httpx's exceptions (which `ServiceClient`
    turns into the provider errors and retries): a timeout to `timeout`, a refused or dropped
    connection to `error`, a broken answer to `RemoteProtocolError`."""

    def __init__(
        self,
        request: httpx.Request,
        timeout: type[httpx.TimeoutException],
        error: type[httpx.TransportError],
    ) -> None:
        self._request = request
        self._timeout = timeout
        self._error = error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, TimeoutError):  # socket.timeout, ssl's handshake timeout
            raise self._timeout(str(exc) or "timed out", request=self._request) from exc
        if isinstance(exc, http.client.RemoteDisconnected):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=self._request
            ) from exc
        if isinstance(exc, http.client.HTTPException):
            raise httpx.RemoteProtocolError(
                f"{type(exc).__name__}: {exc}", request=self._request
            ) from exc
        if isinstance(exc, ssl.SSLError):  # a failed handshake or certificate check
            raise self._error(f"TLS: {exc}", request=self._request) from exc
        if isinstance(exc, OSError):
            raise self._error(str(exc) or type(exc).__name__, request=self._request) from exc
        if isinstance(exc, Exception) and not isinstance(exc, httpx.HTTPError):
            # Anything else `http.client` or the socket raise (a UnicodeError for a host name
            # IDNA refuses, ...) is still one of httpx's errors, which the client maps.
            raise self._error(f"{type(exc).__name__}: {exc}", request=self._request) from exc


class HTTP11Transport(httpx.BaseTransport):
    """HTTP/1.1 over `http.client`, connections kept alive per origin (see the module docstring).

    Thread-safe; `ServiceClient` gives each thread a client and transport of its own anyway."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'.", request=request
            )
        port = url.port or (443 if scheme == "https" else 80)
        # The ASCII (IDNA 2008) name httpx's own transport resolves and checks certificates
        # against; `url.host` is the Unicode one, which the socket module encodes otherwise.
        origin: _Origin = (scheme, url.raw_host.decode("ascii"), port)
        timeouts = _timeouts(request)
        connection = self._idle_connection(origin)
        if connection is None:
            connection = self._connect(origin, timeouts["connect"], request)
        try:
            response, reusable = self._exchange(connection, request, timeouts)
            if response.status == 101:
                # Never asked for (no request sends `Upgrade`), and the connection would speak
                # another protocol afterwards: refused, as httpx's own transport refuses it.
                raise httpx.RemoteProtocolError(
                    "the server switched protocols (101) though no upgrade was asked for",
                    request=request,
                )
            body = _Body(self, origin, connection, response, request, reusable)
            return httpx.Response(
                response.status,
                # As received: http.client decoded the bytes as latin-1, httpx wants bytes.
                headers=[
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.getheaders()
                ],
                stream=body,
                extensions={
                    "http_version": b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1",
                    "reason_phrase": response.reason.encode("latin-1", "replace"),
                },
            )
        except BaseException:
            connection.close()
            raise

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> tuple[http.client.HTTPResponse, bool]:
        """Send `request` and read its answer's head: (the answer, whether the connection can
        carry another request once its body is read)."""
        sock = connection.sock
        assert sock is not None  # connected by `_connect`, or kept alive connected
        body = request.read()
        chunked = "transfer-encoding" in request.headers
        sock.settimeout(timeouts["write"])
        valid = True
        try:  # only buffered: nothing is sent before `endheaders`
            connection.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                connection.putheader(name, value)
        except ValueError:
            valid = False
        if not valid:
            # A line break or control character in a header. http.client's message quotes
            # the value (perhaps a key), so it is neither repeated nor chained.
            raise httpx.LocalProtocolError(
                "a request header is not valid HTTP (a line break or control character in it)",
                request=request,
            )
        try:
            with _Mapped(request, httpx.WriteTimeout, httpx.WriteError):
                connection.endheaders(_pieces(body, chunked), encode_chunked=chunked)
        except httpx.WriteError as broken:
            # The server may have answered and closed before taking the whole body (a 413 or
            # a 401 to an upload): as httpx's own transport does, its answer is what counts.
            sock.settimeout(timeouts["read"])
            try:
                with _Mapped(request, httpx.ReadTimeout, httpx.ReadError):
                    return connection.getresponse(), False
            except httpx.TransportError:
                raise broken from None
        sock.settimeout(timeouts["read"])
        with _Mapped(request, httpx.ReadTimeout, httpx.ReadError):
            return connection.getresponse(), True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, connection in connections:
                connection.close()

    # -- connections -------------------------------------------------------------------------

    def _connect(
        self, origin: _Origin, timeout: float | None, request: httpx.Request
    ) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._ssl_context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.response_class = _Response
        try:
            with _Mapped(request, httpx.ConnectTimeout, httpx.ConnectError):
                connection.connect()
        except BaseException:
            connection.close()
            raise
        return connection

    def _idle_connection(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """A kept-alive connection to `origin` that is still usable, or None. Connections to
        any origin idle past the expiry are closed on the way, as httpx's pool does."""
        now = time.monotonic()
        expired: list[http.client.HTTPConnection] = []
        found = None
        with self._lock:
            for key, connections in self._idle.items():
                while connections and now - connections[0][0] > KEEPALIVE_EXPIRY:
                    expired.append(connections.pop(0)[1])  # oldest first
                if key == origin and connections:
                    found = connections.pop()[1]
        for connection in expired:
            connection.close()
        if found is None:
            return None
        sock = found.sock
        if sock is None or _readable(sock):
            found.close()  # closed (or talking out of turn) by the server: a fresh one
            return None
        return found

    def _release(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            connections = self._idle.setdefault(origin, [])
            if not self._closed and len(connections) < MAX_IDLE_PER_ORIGIN:
                connections.append((time.monotonic(), connection))
                return
        connection.close()


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection's socket has something to read: the server closed it (or
    sent bytes nobody asked for); either way it cannot carry the next request."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _pieces(body: bytes, chunked: bool) -> bytes | Iterator[memoryview] | None:
    """The body as `endheaders` takes it: a small one whole, a large one in pieces, each sent
    with its own write timeout (`sendall` applies one timeout to all it is given), and a
    chunked one always as pieces, so that even an empty one ends with its last chunk."""
    if not chunked and len(body) <= _CHUNK:
        return body or None
    view = memoryview(body)
    return (view[i : i + _CHUNK] for i in range(0, len(body), _CHUNK))


class _Response(http.client.HTTPResponse):
    """`http.client`'s answer, skipping every informational answer before the final one
    (103 Early Hints, 102 Processing), where `http.client` skips only 100. 101 is final."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 102 <= status < 200:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the informational answer's headers, skipped
