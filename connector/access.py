"""`originRequest.access`: the connector refuses a request without a valid Access token for the rule's AUD tags, as
cloudflared's "Protect with Access" does (defence in depth should the edge ever be bypassed).

Standard library only, like the rest of the connector: RS256 (RSASSA-PKCS1-v1_5 with SHA-256) is verified with
Python's big integers against the team's JWKS, fetched from the control plane (`/cdn-cgi/access/certs` of the team
domain, through the address the connector dials), cached, refreshed every REFRESH seconds and at once on an unknown
`kid`. Only RS256 is accepted: `alg: none`, HS256 and the rest are refused. Claims checked: `aud` (one of the rule's
tags), `exp`, `nbf`, `iat` (60 s leeway) and `iss` (the team's URL).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import ssl
import time
import urllib.request
from typing import Any, Callable

log = logging.getLogger("connector")

REFRESH = 300.0  # seconds between JWKS refreshes
MIN_REFETCH = 5.0  # an unknown kid refetches at most this often per team
LEEWAY = 60
MAX_TOKEN = 8192
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class AccessDenied(Exception):
    """The request carries no valid Access token for this rule; the message says why (for the connector's log)."""


def _b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise AccessDenied("malformed token") from None


def _int(segment: str) -> int:
    return int.from_bytes(_b64(segment), "big")


def rsa_pkcs1_sha256_verify(n: int, e: int, message: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2) with SHA-256, compared in constant time."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k or k < 256:  # 2048-bit keys at least
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    encoded = pow(s, e, n).to_bytes(k, "big")
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


def verify_rs256(
    token: str, keys: dict[str, tuple[int, int]], *, audiences: tuple[str, ...], issuer: str, now: float | None = None
) -> dict[str, Any]:
    """The claims of a valid token, or AccessDenied. `keys`: kid -> (n, e)."""
    if not token or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise AccessDenied("no valid token")
    head_b64, body_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
    except (ValueError, UnicodeDecodeError):
        raise AccessDenied("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AccessDenied("malformed token")
    if header.get("alg") != "RS256":
        raise AccessDenied(f"algorithm {header.get('alg')!r} refused (RS256 only)")
    key = keys.get(str(header.get("kid", "")))
    if key is None:
        raise AccessDenied("unknown signing key")
    if not rsa_pkcs1_sha256_verify(key[0], key[1], f"{head_b64}.{body_b64}".encode(), _b64(signature_b64)):
        raise AccessDenied("bad signature")
    now = time.time() if now is None else now
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), (int, float)) or isinstance(claims.get(name), bool):
            raise AccessDenied(f"the token has no {name}")
    if claims["exp"] + LEEWAY <= now:
        raise AccessDenied("expired token")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] - LEEWAY > now:
        raise AccessDenied("token not valid yet")
    aud = claims.get("aud")
    token_auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(tag in token_auds for tag in audiences):
        raise AccessDenied("the token is for another application (aud)")
    if issuer and claims.get("iss") != issuer:
        raise AccessDenied("the token is from another team (iss)")
    return claims


def parse_jwks(document: Any) -> dict[str, tuple[int, int]]:
    keys: dict[str, tuple[int, int]] = {}
    for jwk in (document or {}).get("keys", []) if isinstance(document, dict) else []:
        if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("alg", "RS256") == "RS256":
            try:
                keys[str(jwk["kid"])] = (_int(jwk["n"]), _int(jwk["e"]))
            except (KeyError, TypeError, AccessDenied):
                continue
    return keys


def token_from_headers(headers: Any) -> str:
    """`Cf-Access-Jwt-Assertion`, else the `CF_Authorization` cookie (what cloudflared reads)."""
    cookie_token = ""
    for name, value in headers:
        lower = name.lower()
        if lower == b"cf-access-jwt-assertion":
            return value.decode("latin-1").strip()
        if lower == b"cookie" and b"CF_Authorization=" in value:
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == "CF_Authorization":
                    cookie_token = val
    return cookie_token


class TeamKeys:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, int]] = {}
        self.fetched_at = 0.0
        self.task: asyncio.Future | None = None


class AccessVerifier:
    """JWKS per team, fetched through the control plane; set `base_url`, `auth_domain` and `team_url` from WELCOME."""

    def __init__(self, fetch: Callable[[str, str], Any] | None = None) -> None:
        self.base_url = ""  # http(s)://host:port the connector dials
        self.auth_domain = ""
        self.team_url = ""  # "http://{team}.access.localhost:8000": the issuer, per team
        self.teams: dict[str, TeamKeys] = {}
        self._fetch = fetch or self._fetch_jwks
        self.ssl_context: ssl.SSLContext | None = None

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.auth_domain)

    def issuer(self, team: str) -> str:
        return self.team_url.replace("{team}", team) if self.team_url else ""

    def _fetch_jwks(self, url: str, host: str) -> Any:
        request = urllib.request.Request(url, headers={"Host": host, "Accept": "application/json"})
        context = self.ssl_context if url.startswith("https") else None
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 (our own server)
            return json.loads(response.read(1024 * 1024))

    async def refresh(self, team: str) -> None:
        entry = self.teams.setdefault(team, TeamKeys())
        if entry.task is None:
            loop = asyncio.get_running_loop()
            url = f"{self.base_url}/cdn-cgi/access/certs"
            host = f"{team}.{self.auth_domain}"
            entry.task = loop.run_in_executor(None, self._fetch, url, host)
            try:
                entry.keys = parse_jwks(await entry.task)
                entry.fetched_at = time.monotonic()
            except Exception as exc:
                log.warning("access: could not fetch the JWKS of team %s from %s: %s", team, url, exc)
                entry.fetched_at = time.monotonic()  # wait MIN_REFETCH before trying again
            finally:
                entry.task = None
        else:
            await asyncio.shield(entry.task)

    def check_now(self, token: str, team: str, audiences: tuple[str, ...]) -> dict[str, Any] | None:
        """Claims if the token verifies with the cached keys; None when the keys must be fetched first (no keys yet,
        stale, or an unknown kid); AccessDenied otherwise."""
        entry = self.teams.get(team)
        if entry is None or not entry.keys or time.monotonic() - entry.fetched_at > REFRESH:
            return None
        try:
            return verify_rs256(token, entry.keys, audiences=audiences, issuer=self.issuer(team))
        except AccessDenied as exc:
            if str(exc) == "unknown signing key" and time.monotonic() - entry.fetched_at > MIN_REFETCH:
                return None
            raise

    async def check(self, token: str, team: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        if not self.configured:
            raise AccessDenied("this control plane did not say where the Access keys are (upgrade the server)")
        if not token:
            raise AccessDenied("no Access token (Cf-Access-Jwt-Assertion) on the request")
        claims = self.check_now(token, team, audiences)
        if claims is not None:
            return claims
        await self.refresh(team)
        entry = self.teams.get(team)
        return verify_rs256(token, entry.keys if entry else {}, audiences=audiences, issuer=self.issuer(team))
