"""A small asyncio HTTP/1.1 client for origins: keep-alive pools, timeouts, TLS, unix sockets. Standard library only;
`httptools` (the `fast` extra) parses responses when it is importable, a pure-Python parser otherwise.

It is callback driven, not coroutine driven: an `OriginConnection` is an `asyncio.Protocol` that parses the response
as bytes arrive and hands each piece to its *exchange* (the data plane's stream) at once, so a request that finds an
idle pooled connection costs no task and no await. Only dialling a new connection is a coroutine.

The exchange is any object with these methods (called from the event loop, never concurrently):

* `on_head(status, headers)`: the final response head (1xx interim responses are skipped); headers are
  `[(lower-case name, value)]` bytes pairs as received (Transfer-Encoding included).
* `on_body(data)`: a piece of the decoded body (chunked framing removed), as soon as it arrives.
* `on_end()`: the response is complete. The connection is then free: the exchange calls `finish(reusable)`.
* `on_error(error)`: an `OriginError`; the connection is already closed.
* `on_writable()`: the connection's write buffer drained after `pause_writing` (request body flow control).

Errors carry a message a person can act on and the protocol.ResetCode the data plane answers with.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import socket
import ssl
import time
from typing import Any

from .protocol import ResetCode

try:  # optional speed-up, like uvloop: pip install zt-connector[fast]
    import httptools
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    httptools = None

log = logging.getLogger("connector")

MAX_HEAD_SIZE = 64 * 1024  # largest response head accepted from an origin
RESOLVE_TTL = 30.0  # seconds a DNS answer is reused (IP literals are never looked up)
UNKNOWN_AUTHORITY_HINT = (
    "set the origin server name, install an Origin CA certificate, or enable No TLS verify "
    "(originRequest: originServerName, caPool, noTLSVerify)"
)
# OpenSSL's X509_V_ERR_*: depth-zero self-signed, self-signed in chain, unable to get (local) issuer certificate.
UNKNOWN_AUTHORITY_CODES = frozenset({18, 19, 20, 2})
TLS_VERIFY_HINT = "set originServerName to the name in the origin's certificate, or noTLSVerify to skip verification"


class OriginError(Exception):
    """Calling the origin failed. `message` is shown to the visitor (502/504 page) and logged; `code` is the
    ResetCode the stream is reset with. `retryable`: failed on a reused connection before any response byte."""

    def __init__(self, message: str, code: int = ResetCode.ORIGIN_ERROR, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


def _seconds(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------------------------------ targets, TLS


class Target:
    """Where an origin lives and how to talk to it: a TCP host:port or a unix socket path, TLS or not, and the
    originRequest settings that shape connections (timeouts, keep-alive, TLS verification)."""

    __slots__ = (
        "connect_timeout",
        "host",
        "keep_alive_connections",
        "keep_alive_timeout",
        "name",
        "port",
        "server_hostname",
        "ssl_context",
        "tcp_keep_alive",
        "tls_timeout",
        "unix_path",
    )

    def __init__(
        self,
        *,
        host: str = "",
        port: int = 0,
        unix_path: str = "",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str = "",
        connect_timeout: float = 30,
        tls_timeout: float = 10,
        tcp_keep_alive: float = 30,
        keep_alive_connections: int = 100,
        keep_alive_timeout: float = 90,
    ) -> None:
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.tls_timeout = tls_timeout
        self.tcp_keep_alive = tcp_keep_alive
        self.keep_alive_connections = keep_alive_connections
        self.keep_alive_timeout = keep_alive_timeout
        if unix_path:
            self.name = f"unix socket {unix_path}"
        else:
            self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TLSContexts:
    """SSL contexts for origins, one per (caPool, noTLSVerify), verifying against the system roots, `caPool`,
    `extra_ca_file` (TUNNEL_ORIGIN_CA_FILE) and the Origin CA roots the control plane sends with each CONFIG."""

    def __init__(self, extra_ca_file: str = "") -> None:
        self.extra_ca_file = extra_ca_file
        self.origin_ca_pem = ""
        self._contexts: dict[tuple[str, bool, str, str], ssl.SSLContext] = {}

    def set_origin_ca(self, pem: str) -> None:
        """Raises ValueError when the bundle does not load (the previous one stays)."""
        if pem:
            try:
                ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"the Origin CA bundle does not load: {exc}") from None
        self.origin_ca_pem = pem
        self._contexts.clear()

    def get(self, ca_pool: str, no_verify: bool) -> ssl.SSLContext:
        key = (ca_pool, no_verify, self.extra_ca_file, self.origin_ca_pem)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context()
            for path, what in ((ca_pool, "caPool"), (self.extra_ca_file, "the origin CA bundle")):
                if not path:
                    continue
                try:
                    context.load_verify_locations(cafile=path)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
                    raise OriginError(f"cannot load {what} file {path}: {reason}")
            if self.origin_ca_pem:
                context.load_verify_locations(cadata=self.origin_ca_pem)
            if no_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[key] = context
        return context


# ------------------------------------------------------------------------------------------------ name resolution


def _literal_family(host: str) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return 0


class Resolver:
    """getaddrinfo with a short cache, so that a busy origin costs no lookup per connection, and the address that
    answered last is tried first (no happy eyeballs: addresses are tried in turn within connectTimeout)."""

    def __init__(self, ttl: float = RESOLVE_TTL) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}

    async def resolve(self, host: str, port: int) -> list[tuple[int, Any]]:
        family = _literal_family(host)
        if family:
            return [(family, (host, port))]
        key = (host, port)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise OriginError(f"cannot resolve {host}: {exc.strerror or exc}")
        addresses: list[tuple[int, Any]] = []
        for family, _type, _proto, _name, sockaddr in infos:
            if (family, sockaddr) not in addresses:
                addresses.append((family, sockaddr))
        if not addresses:
            raise OriginError(f"cannot resolve {host}: no addresses")
        self._cache[key] = (now + self.ttl, addresses)
        return addresses

    def prefer(self, host: str, port: int, address: tuple[int, Any]) -> None:
        cached = self._cache.get((host, port))
        if cached is not None and cached[1][0] != address and address in cached[1]:
            rest = [item for item in cached[1] if item != address]
            self._cache[(host, port)] = (cached[0], [address, *rest])


def _set_keepalive(sock: socket.socket, seconds: float) -> None:
    """SO_KEEPALIVE with cloudflared's tcpKeepAlive as both idle time and probe interval (0 leaves it off)."""
    if seconds <= 0 or sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    interval = max(1, int(seconds))
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, interval)
            except OSError:  # pragma: no cover - platform specific
                pass
    if hasattr(socket, "TCP_KEEPALIVE") and not hasattr(socket, "TCP_KEEPIDLE"):  # pragma: no cover - macOS
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPALIVE, interval)
        except OSError:
            pass


async def _connect_socket(target: Target, resolver: Resolver) -> socket.socket:
    loop = asyncio.get_running_loop()
    if target.unix_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, target.unix_path)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, FileNotFoundError):
                raise OriginError(f"{target.name} does not exist")
            if isinstance(exc, ConnectionRefusedError):
                raise OriginError(f"connection refused by {target.name}")
            if isinstance(exc, PermissionError):
                raise OriginError(f"permission denied connecting to {target.name}")
            if isinstance(exc, OSError):
                raise OriginError(f"cannot connect to {target.name}: {exc.strerror or exc}")
            raise
        return sock
    addresses = await resolver.resolve(target.host, target.port)
    last: OSError | None = None
    for address in addresses:
        family, sockaddr = address
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        if len(addresses) > 1:
            resolver.prefer(target.host, target.port, address)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_keepalive(sock, target.tcp_keep_alive)
        except OSError:  # pragma: no cover
            pass
        return sock
    if isinstance(last, ConnectionRefusedError):
        raise OriginError(f"connection refused by {target.name}")
    reason = (last.strerror if last is not None else "") or str(last)
    raise OriginError(f"cannot connect to {target.name}: {reason}")


async def open_origin_socket(target: Target, resolver: Resolver) -> socket.socket:
    """A connected socket to the origin within connectTimeout (DNS included, TLS not). Raises OriginError."""
    timeout = target.connect_timeout
    try:
        if timeout > 0:
            return await asyncio.wait_for(_connect_socket(target, resolver), timeout)
        return await _connect_socket(target, resolver)
    except asyncio.TimeoutError:
        raise OriginError(
            f"origin did not accept the connection within {_seconds(timeout)} s ({target.name}, connectTimeout)",
            ResetCode.TIMEOUT,
        )


def tls_error(exc: BaseException, target: Target) -> OriginError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        if exc.verify_code in UNKNOWN_AUTHORITY_CODES:
            return OriginError(
                f"TLS verification of the origin certificate failed for {target.server_hostname!r} "
                f"({target.name}): certificate signed by unknown authority ({reason}); {UNKNOWN_AUTHORITY_HINT}"
            )
        return OriginError(
            f"TLS verification of the origin certificate failed for {target.server_hostname!r} "
            f"({target.name}): {reason}; {TLS_VERIFY_HINT}"
        )
    if isinstance(exc, ssl.SSLError):
        return OriginError(f"TLS handshake with {target.name} failed: {exc.reason or exc}")
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError)):
        return OriginError(f"{target.name} closed the connection during the TLS handshake (is it a TLS server?)")
    return OriginError(f"TLS handshake with {target.name} failed: {exc}")


async def open_connection(
    target: Target, resolver: Resolver, protocol_factory: Any
) -> tuple[asyncio.BaseTransport, Any]:
    """Connect (TCP or unix) within connectTimeout, then the TLS handshake within tlsTimeout."""
    loop = asyncio.get_running_loop()
    sock = await open_origin_socket(target, resolver)
    if target.ssl_context is None:
        try:
            return await loop.create_connection(protocol_factory, sock=sock)
        except BaseException:
            sock.close()
            raise
    timeout = target.tls_timeout
    handshake = loop.create_connection(
        protocol_factory,
        sock=sock,
        ssl=target.ssl_context,
        server_hostname=target.server_hostname or None,
        ssl_handshake_timeout=(timeout + 5) if timeout > 0 else None,
    )
    try:
        if timeout > 0:
            return await asyncio.wait_for(handshake, timeout)
        return await handshake
    except asyncio.TimeoutError:
        sock.close()
        raise OriginError(
            f"origin did not complete the TLS handshake within {_seconds(timeout)} s ({target.name}, tlsTimeout)",
            ResetCode.TIMEOUT,
        )
    except (OSError, ssl.SSLError, EOFError) as exc:
        sock.close()
        raise tls_error(exc, target)
    except BaseException:
        sock.close()
        raise


# ------------------------------------------------------------------------------------------------ response parsing


class ParseError(Exception):
    pass


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class PyResponseParser:
    """The pure-Python fallback for httptools.HttpResponseParser, with the same callbacks (on_header,
    on_headers_complete, on_body, on_message_complete) and queries (get_status_code, should_keep_alive,
    get_http_version). Parses consecutive responses (1xx interim ones before the final one)."""

    def __init__(self, callbacks: Any) -> None:
        self._cb = callbacks
        self._buffer = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self._status = 0
        self._version = "1.1"
        self._close = False
        self._keep_alive_token = False

    def get_status_code(self) -> int:
        return self._status

    def get_http_version(self) -> str:
        return self._version

    def should_keep_alive(self) -> bool:
        if self._close:
            return False
        return self._version == "1.1" or self._keep_alive_token

    def feed_data(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_SIZE:
                        raise ParseError("response head too large")
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._parse_head(head)
            elif state == _LENGTH:
                size = min(self._remaining, len(buffer))
                chunk = bytes(buffer[:size])
                del buffer[:size]
                self._remaining -= size
                self._cb.on_body(chunk)
                if not self._remaining:
                    self._complete()
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 4096:
                        raise ParseError("chunk size line too long")
                    return
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ParseError(f"invalid chunk size {line[:20]!r}")
                if size < 0:
                    raise ParseError("invalid chunk size")
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                size = min(self._remaining, len(buffer))
                chunk = bytes(buffer[:size])
                del buffer[:size]
                self._remaining -= size
                self._cb.on_body(chunk)
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise ParseError("missing CRLF after a chunk")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_SIZE:
                        raise ParseError("trailers too large")
                    return
                del buffer[: end + 2]
                if end == 0:
                    self._complete()
            elif state == _UNTIL_CLOSE:
                chunk = bytes(buffer)
                buffer.clear()
                self._cb.on_body(chunk)
            else:
                raise ParseError("data after the response")

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ParseError(f"invalid status line {status_line[:60]!r}")
        self._version = parts[0][5:].decode("latin-1")
        self._status = status = int(parts[1])
        length = None
        chunked = False
        self._close = False
        self._keep_alive_token = False
        on_header = self._cb.on_header
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ParseError(f"invalid header line {line[:60]!r}")
            value = value.strip()
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ParseError("invalid Content-Length")
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().split(b",")[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = [token.strip() for token in value.lower().split(b",")]
                self._close = self._close or b"close" in tokens
                self._keep_alive_token = self._keep_alive_token or b"keep-alive" in tokens
            on_header(name, value)
        self._cb.on_headers_complete()
        if 100 <= status < 200 or status in (204, 304):
            self._complete()
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            if length:
                self._state = _LENGTH
            else:
                self._complete()
        else:
            self._close = True
            self._state = _UNTIL_CLOSE

    def _complete(self) -> None:
        interim = 100 <= self._status < 200
        self._state = _HEAD if interim else _DONE
        self._cb.on_message_complete()


def new_parser(callbacks: Any, pure_python: bool = False) -> Any:
    if httptools is not None and not pure_python:
        return httptools.HttpResponseParser(callbacks)
    return PyResponseParser(callbacks)


_PARSE_ERRORS: tuple[type[BaseException], ...] = (ParseError,)
if httptools is not None:
    _PARSE_ERRORS = (ParseError, httptools.HttpParserError)


# ------------------------------------------------------------------------------------------------ connections


class OriginConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to an origin, serving one exchange at a time (no pipelining)."""

    pure_python = False  # force the fallback parser (tests)

    def __init__(self, pool: OriginPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.exchange: Any = None
        self.parser: Any = None
        self.closed = False
        self.write_paused = False
        self.requests = 0  # exchanges started on this connection (> 1: reused)
        self.idle_since = 0.0
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._interim = False
        self._head_only = False
        self._started = False  # final head delivered
        self._received = False  # any response byte received
        self._framed = True  # body delimited by length or chunking (False: read until close)
        self._done = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.exchange is None or self._done:
            # Bytes nobody asked for (an idle connection, or after a HEAD response): the connection is unusable.
            self.close()
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except _PARSE_ERRORS as exc:
            if self.exchange is not None and not self._done:
                self._fail(OriginError(f"origin sent an invalid HTTP response: {exc}"))
            else:
                self.close()

    def eof_received(self) -> bool:
        if self.exchange is not None and not self._done and self._started and not self._framed:
            self._message_complete(reusable=False)
        self.close()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.exchange is None or self._done:
            return
        if self._started and not self._framed:
            self._message_complete(reusable=False)
            return
        if self._started:
            self._lost(OriginError("origin closed the connection before the end of the response"))
        else:
            detail = f": {exc}" if exc else ""
            self._lost(
                OriginError(
                    f"origin closed the connection before responding{detail}",
                    retryable=self.requests > 1 and not self._received,
                )
            )

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None and not self._done:
            self.exchange.on_writable()

    # -- parser callbacks ------------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._headers = []
            if status == 101:
                raise ParseError("unexpected 101 Switching Protocols")
            self._interim = True
            return
        headers = self._headers
        self._headers = []
        self._started = True
        self._status = status
        framed = self._head_only or status in (204, 304)
        if not framed:
            for name, value in headers:
                if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
                    framed = True
                    break
        self._framed = framed
        self.exchange.on_head(status, headers)
        if self._head_only and not self._done and self.exchange is not None:
            self._message_complete(reusable=self._head_keep_alive(headers))

    def on_body(self, body: bytes) -> None:
        if not self._done and self.exchange is not None:
            self.exchange.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._done and self.exchange is not None:
            self._message_complete(reusable=self.parser.should_keep_alive())

    def _head_keep_alive(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.parser.get_http_version() != "1.1":
            return False
        return not any(name == b"connection" and b"close" in value.lower() for name, value in headers)

    # -- driving an exchange ---------------------------------------------------------------------------------

    def start(self, exchange: Any, head: bytes, head_only: bool) -> None:
        """Send a request head for `exchange`; the body (if any) follows with write()."""
        self.exchange = exchange
        self.requests += 1
        self.parser = new_parser(self, self.pure_python)
        self._headers = []
        self._interim = False
        self._head_only = head_only
        self._started = self._received = self._done = False
        self._framed = True
        self.transport.write(head)

    def write(self, data: Any) -> None:
        if not self.closed:
            self.transport.write(data)

    def writelines(self, parts: list[Any]) -> None:
        if not self.closed:
            self.transport.writelines(parts)

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    def _message_complete(self, reusable: bool) -> None:
        self._done = True
        self._reusable = reusable
        self.exchange.on_end()

    def finish(self, reusable: bool) -> None:
        """The exchange is done with this connection: back to the pool when both sides allow it."""
        reusable = reusable and self._done and getattr(self, "_reusable", False) and not self.closed
        self.exchange = None
        self.parser = None
        if reusable:
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, error: OriginError) -> None:
        exchange = self.exchange
        self.exchange = None
        self._done = True
        self.close()
        if exchange is not None:
            exchange.on_error(error)

    def _lost(self, error: OriginError) -> None:
        exchange = self.exchange
        self.exchange = None
        self._done = True
        if exchange is not None:
            exchange.on_error(error)

    def abort(self) -> None:
        """Drop the connection now (the exchange was cancelled)."""
        self.exchange = None
        self._done = True
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


class OriginPool:
    """Idle keep-alive connections to one target: at most keepAliveConnections idle ones, each dropped after
    keepAliveTimeout idle. Busy connections are not limited (as cloudflared's Go transport)."""

    def __init__(self, target: Target, resolver: Resolver) -> None:
        self.target = target
        self.resolver = resolver
        self.idle: collections.deque[OriginConnection] = collections.deque()
        self.connections_made = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self) -> OriginConnection | None:
        idle = self.idle
        if not idle:
            return None
        deadline = time.monotonic() - self.target.keep_alive_timeout
        while idle:
            conn = idle.pop()  # most recently used first: it is the least likely to have been closed by the origin
            if conn.closed:
                continue
            if conn.idle_since < deadline:
                conn.close()
                continue
            return conn
        return None

    def release(self, conn: OriginConnection) -> None:
        if len(self.idle) >= self.target.keep_alive_connections or self.target.keep_alive_timeout <= 0:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep()

    def forget(self, conn: OriginConnection) -> None:
        if self.idle and conn in self.idle:
            self.idle.remove(conn)

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_event_loop()
        self._sweeper = loop.call_later(min(self.target.keep_alive_timeout, 30.0) + 0.05, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        deadline = time.monotonic() - self.target.keep_alive_timeout
        while self.idle and self.idle[0].idle_since < deadline:  # oldest first
            self.idle.popleft().close()
        if self.idle:
            self._schedule_sweep()

    async def connect(self) -> OriginConnection:
        _transport, conn = await open_connection(self.target, self.resolver, lambda: OriginConnection(self))
        self.connections_made += 1
        return conn

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self.idle:
            self.idle.pop().close()


def server_name_for(service_host: str, request_host: str, origin_server_name: str, match_sni_to_host: bool) -> str:
    """The TLS server name (SNI and verification): originServerName, else (matchSNItoHost) the request host, else
    the service host (for unix+tls, which has none: the request host)."""
    if origin_server_name:
        return origin_server_name
    if match_sni_to_host or not service_host:
        return request_host
    return service_host


def env_extra_ca_file() -> str:
    """The Origin CA bundle hook's default: TUNNEL_ORIGIN_CA_FILE (the supervisor may set one explicitly)."""
    return os.environ.get("TUNNEL_ORIGIN_CA_FILE", "")
