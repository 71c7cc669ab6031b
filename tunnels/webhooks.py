"""Webhook URLs a tenant may point alerts at, and their delivery, without server-side request forgery.

A webhook is a request the control plane makes on a tenant's behalf, from inside the operator's network. So the
URL may not reach the installation itself nor anything that is not on the public internet: loopback, link-local
(169.254.169.254 is the cloud metadata service), private, shared (CGNAT), multicast, unspecified and reserved
addresses are refused, as are the installation's own host names (CONTROL_PLANE_HOSTS, PUBLIC_URL). An operator
whose receivers live on a private network sets WEBHOOK_ALLOW_PRIVATE=1, which allows loopback and private ranges
(never link-local, multicast, unspecified or reserved ones, nor the control plane's own names and address).

The URL is checked when it is saved (a clear error) and again at every delivery: the name is resolved, every
address it resolves to is checked, and the connection goes to the checked address (pinned; the Host header and
TLS SNI and certificate check still use the name), so a name that re-resolves to an internal address meanwhile
(DNS rebinding) gets nothing. Redirects are never followed: a 3xx is a failed delivery.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

MAX_URL_LENGTH = 2000
SAVE_RESOLVE_TIMEOUT = 2.0
RESPONSE_READ_LIMIT = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not flagged by the ipaddress module's is_private in every Python version, and never a webhook receiver.
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE_NETWORKS = (
    *(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    _SHARED,
)


class WebhookRefused(Exception):
    """The URL may not be called (a refused address or host). Permanent: not retried."""


class WebhookFailed(Exception):
    """The receiver answered with a permanent failure (a redirect, a 4xx). Not retried."""


class WebhookUnavailable(OSError):
    """A temporary failure (5xx, 408, 429): an OSError, so the delivery task retries it like a network error."""


def _strip(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _own_hosts() -> set[str]:
    names = {_strip(host) for host in settings.CONTROL_PLANE_HOSTS}
    names.add(_strip(urlsplit(settings.PUBLIC_URL).hostname or ""))
    return names - {""}


def _own_origin() -> tuple[str, int]:
    public = urlsplit(settings.PUBLIC_URL)
    return _strip(public.hostname or ""), public.port or (443 if public.scheme == "https" else 80)


def _is_own_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if host in _own_hosts():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return True  # one of the installation's names
        # An own host that is an IP address: loopback ones are judged as addresses (WEBHOOK_ALLOW_PRIVATE allows
        # them, for receivers on the same machine), any other is the installation's own address.
        return not ipaddress.ip_address(host).is_loopback
    return any(host.endswith(suffix) for suffix in settings.CONTROL_PLANE_DOMAIN_SUFFIXES)


def address_refusal(address: Address) -> str | None:
    """Why a webhook may not connect to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 reached through IPv6: mapped, 6to4, Teredo (the client) or NAT64 are judged by the IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if any(address in network for network in _PRIVATE_NETWORKS if network.version == address.version):
        return None if allow_private else "a private address"
    if address.is_reserved or address.is_private or not address.is_global:
        return "a reserved address"
    return None


def _check_host(host: str, port: int) -> Address | None:
    """Refuse the installation's own names and origin; an IP literal is returned to be checked as an address."""
    if not host:
        raise WebhookRefused("The URL has no host.")
    if _is_own_name(host) or (host, port) == _own_origin():
        raise WebhookRefused(f"“{host}” is this installation's own address.")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[Address] = []
    for _, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _checked(host: str, addresses: list[Address]) -> list[Address]:
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            shown = host if str(address) == host else f"{host} ({address})"
            raise WebhookRefused(
                f"{shown} is {reason}; webhooks go to public addresses only"
                + ("" if settings.WEBHOOK_ALLOW_PRIVATE else " (the operator can allow private ones)")
                + "."
            )
    return addresses


def _parts(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"Enter an http(s) URL of at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused("Enter a valid http(s) URL.") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("Enter an http(s) URL.")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("Put no credentials in the URL: deliveries are signed with the destination's secret.")
    host = _strip(parts.hostname or "")
    port = port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, target


def webhook_url_validate(url: str) -> None:
    """At save: refuse a URL whose host is refused, or whose name resolves (now) to a refused address; a name that
    does not resolve within a moment is accepted (it is resolved and checked again at every delivery)."""
    try:
        _, host, port, _ = _parts(url)
        literal = _check_host(host, port)
        if literal is not None:
            _checked(host, [literal])
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(_resolve, host, port)
            try:
                addresses = future.result(timeout=SAVE_RESOLVE_TIMEOUT)
            except (OSError, FutureTimeout, UnicodeError):
                return
        _checked(host, addresses)
    except WebhookRefused as exc:
        raise ValidationError({"url": str(exc)}) from None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)  # SNI and certificate: the name


def webhook_post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url` at a checked, pinned address; the status on a 2xx. WebhookRefused / WebhookFailed
    are permanent, OSError (including WebhookUnavailable) temporary."""
    scheme, host, port, target = _parts(url)
    literal = _check_host(host, port)
    addresses = _checked(host, [literal] if literal is not None else _resolve(host, port))
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    last_error: OSError = OSError(f"{host} has no address")
    for address in addresses:
        connection = connection_class(host, port, address, timeout)
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(RESPONSE_READ_LIMIT)
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            last_error = exc if isinstance(exc, OSError) else OSError(str(exc))
            continue
        finally:
            connection.close()
        if 200 <= status < 300:
            return status
        if 300 <= status < 400:
            raise WebhookFailed(f"{host} answered {status}: redirects are not followed")
        if status >= 500 or status in (408, 429):
            raise WebhookUnavailable(f"{host} answered {status}")
        raise WebhookFailed(f"{host} answered {status}")
    raise last_error
