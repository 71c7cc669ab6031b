"""The connector's own RS256 verifier (stdlib only) against tokens made by PyJWT and cryptography: what PyJWT accepts
it accepts, and every forgery PyJWT refuses it refuses; the JWKS is fetched from a real HTTP server, cached, and
refetched on an unknown key."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.access import AccessDenied, AccessVerifier, parse_jwks, rsa_pkcs1_sha256_verify, verify_rs256
from tests.live_server import serve_in_thread

ISS = "https://alpha.access.example"
AUD = "a" * 64


def new_key(kid: str):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return private, jwk


KEY, JWK = new_key("k1")
OTHER, OTHER_JWK = new_key("k2")
KEYS = parse_jwks({"keys": [JWK]})


def token(claims=None, key=KEY, kid="k1", algorithm="RS256", **headers):
    now = int(time.time())
    body = {"aud": [AUD], "email": "ana@example.com", "iat": now, "nbf": now, "exp": now + 600, "iss": ISS}
    body.update(claims or {})
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid, **headers})


def test_tokens_pyjwt_signs_verify():
    claims = verify_rs256(token(), KEYS, audiences=(AUD,), issuer=ISS)
    assert claims["email"] == "ana@example.com"
    assert verify_rs256(token({"aud": AUD}), KEYS, audiences=("other", AUD), issuer=ISS)["aud"] == AUD


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(key=OTHER), "bad signature"),
        (lambda: token(kid="k2", key=OTHER), "unknown signing key"),
        (lambda: token({"exp": int(time.time()) - 120}), "expired"),
        (lambda: token({"nbf": int(time.time()) + 600}), "not valid yet"),
        (lambda: token({"aud": ["b" * 64]}), "another application"),
        (lambda: token({"iss": "https://evil.example"}), "another team"),
        (lambda: token({"exp": None}), "no exp"),
        (
            lambda: jwt.encode(
                {"aud": [AUD], "exp": time.time() + 60}, "k" * 32, algorithm="HS256", headers={"kid": "k1"}
            ),
            "algorithm",
        ),
        (
            lambda: _b64(b'{"alg":"none","kid":"k1"}') + "." + _b64(json.dumps({"aud": [AUD]}).encode()) + ".",
            "algorithm",
        ),
        (lambda: "not.a.token", "malformed"),
        (lambda: "", "no valid token"),
        (lambda: "a" * 9000, "no valid token"),
    ],
)
def test_forgeries_are_refused(make, reason):
    with pytest.raises(AccessDenied, match=reason):
        verify_rs256(make(), KEYS, audiences=(AUD,), issuer=ISS)


def test_a_tampered_payload_fails_the_signature():
    head, body, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["email"] = "root@example.com"
    forged = ".".join([head, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(AccessDenied, match="bad signature"):
        verify_rs256(forged, KEYS, audiences=(AUD,), issuer=ISS)


def test_the_raw_pkcs1_check_refuses_short_keys_and_out_of_range_signatures():
    n, e = KEYS["k1"]
    assert not rsa_pkcs1_sha256_verify(n, e, b"x", b"\x00" * 256)
    assert not rsa_pkcs1_sha256_verify(n, e, b"x", n.to_bytes(256, "big"))  # s >= n
    assert not rsa_pkcs1_sha256_verify(3233, 17, b"x", b"\x01" * 2)  # a toy key is refused outright


def jwks_server(documents: list, hosts: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hosts.append(self.headers["Host"])
            data = json.dumps(documents[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def test_the_jwks_is_fetched_through_the_control_plane_cached_and_refetched_on_a_new_key(monkeypatch):
    documents, hosts = [{"keys": [JWK]}], []
    monkeypatch.setattr("connector.access.MIN_REFETCH", 0.0)
    with serve_in_thread(jwks_server(documents, hosts)) as port:
        verifier = AccessVerifier()
        verifier.base_url, verifier.auth_domain, verifier.team_url = (
            f"http://127.0.0.1:{port}",
            "access.example",
            ISS.replace("alpha", "{team}"),
        )

        async def scenario():
            assert (await verifier.check(token(), "alpha", (AUD,)))["email"] == "ana@example.com"
            assert hosts == ["alpha.access.example"]
            assert verifier.check_now(token(), "alpha", (AUD,)) is not None  # from the cache: no fetch
            assert len(hosts) == 1
            documents[0] = {"keys": [JWK, OTHER_JWK]}  # a rotation: the new key signs
            assert verifier.check_now(token(key=OTHER, kid="k2"), "alpha", (AUD,)) is None  # must fetch first
            assert (await verifier.check(token(key=OTHER, kid="k2"), "alpha", (AUD,)))["iss"] == ISS
            assert len(hosts) == 2
            with pytest.raises(AccessDenied, match="no Access token"):
                await verifier.check("", "alpha", (AUD,))

        asyncio.run(scenario())


def test_without_the_servers_address_every_request_is_refused():
    with pytest.raises(AccessDenied, match="did not say where"):
        asyncio.run(AccessVerifier().check(token(), "alpha", (AUD,)))
