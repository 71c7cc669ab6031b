"""Reaching an origin: where it is (`Target`), TLS contexts, a small DNS cache, dialling within connectTimeout and
the TLS handshake within tlsTimeout, and `OriginError` with a message a person can act on. The HTTP/1.1 exchange
over the connection is httpclient.py's. Standard library only, Python >= 3.9."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import time
from typing import Any

from .protocol import ResetCode

log = logging.getLogger("connector")

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
