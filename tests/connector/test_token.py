import base64
import json

import pytest

from connector.token import (
    INVALID_TOKEN_MESSAGE,
    InvalidToken,
    encode_token,
    is_loopback,
    parse_token,
    read_token_file,
    resolve_edge_url,
)

TUNNEL = "6f1c6a5e-7d6e-4b3a-9d7a-3c1f2e0b9a11"
SECRET = bytes(range(32))


def b64json(data) -> str:
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def test_cloudflared_token_format():
    # What cloudflared's json.Marshal + base64.StdEncoding produce: "s" is the base64 of the secret bytes.
    raw = b64json({"a": "acc", "t": TUNNEL, "s": base64.b64encode(SECRET).decode()})
    assert raw.startswith("eyJhIjoi")
    token = parse_token(raw)
    assert (token.account_tag, token.tunnel_id, token.secret, token.endpoint) == ("acc", TUNNEL, SECRET, "")
    assert token.authorization == f"Bearer {raw}"
    assert SECRET.hex() not in repr(token) and raw not in repr(token)


def test_round_trip_with_endpoint_and_whitespace():
    raw = encode_token("acc", TUNNEL.upper(), SECRET, endpoint="https://cp.example.com")
    token = parse_token(f"  {raw}\n")
    assert token.tunnel_id == TUNNEL and token.endpoint == "https://cp.example.com" and token.raw == raw


BAD = {
    "empty": "",
    "spaces": "   ",
    "not base64": "not a token!",
    "bad padding": "eyJhIjoi",
    "urlsafe alphabet": base64.urlsafe_b64encode(b'{"a":"x","t":"' + b"\xfb" * 3 + b'"}').decode(),
    "not json": base64.b64encode(b"hello").decode(),
    "not utf-8": base64.b64encode(b"\xff\xfe").decode(),
    "json list": b64json([1, 2]),
    "no account": b64json({"t": TUNNEL, "s": "AAAA"}),
    "account not a string": b64json({"a": 1, "t": TUNNEL, "s": "AAAA"}),
    "no tunnel": b64json({"a": "acc", "s": "AAAA"}),
    "tunnel not a uuid": b64json({"a": "acc", "t": "tunnel-1", "s": "AAAA"}),
    "no secret": b64json({"a": "acc", "t": TUNNEL}),
    "secret not base64": b64json({"a": "acc", "t": TUNNEL, "s": "%%%"}),
    "secret empty": b64json({"a": "acc", "t": TUNNEL, "s": ""}),
    "endpoint not a string": b64json({"a": "acc", "t": TUNNEL, "s": "AAAA", "e": 5}),
}


@pytest.mark.parametrize("raw", BAD.values(), ids=BAD.keys())
def test_invalid_tokens_say_what_cloudflared_says(raw):
    with pytest.raises(InvalidToken) as caught:
        parse_token(raw)
    assert str(caught.value) == INVALID_TOKEN_MESSAGE == "Provided Tunnel token is not valid."
    assert caught.value.detail


def test_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("  abc \n")
    assert read_token_file(str(path)) == "abc"
    with pytest.raises(InvalidToken, match="not valid"):
        read_token_file(str(tmp_path / "missing"))


TOKEN = parse_token(encode_token("acc", TUNNEL, SECRET))
TOKEN_WITH_E = parse_token(encode_token("acc", TUNNEL, SECRET, endpoint="https://cp.example.com"))


@pytest.mark.parametrize(
    "edge,token,url",
    [
        (None, TOKEN_WITH_E, "wss://cp.example.com/connector/v1"),
        ("http://127.0.0.1:8000", TOKEN_WITH_E, "ws://127.0.0.1:8000/connector/v1"),  # --edge wins
        ("https://cp.example.com/", TOKEN, "wss://cp.example.com/connector/v1"),
        ("https://cp.example.com/zt", TOKEN, "wss://cp.example.com/zt/connector/v1"),
        ("wss://cp.example.com:8443/connector/v1", TOKEN, "wss://cp.example.com:8443/connector/v1"),
        ("cp.example.com", TOKEN, "wss://cp.example.com/connector/v1"),
        ("HTTPS://[::1]:9000", TOKEN, "wss://[::1]:9000/connector/v1"),
    ],
)
def test_resolve_edge_url(edge, token, url):
    assert resolve_edge_url(edge, token) == url


@pytest.mark.parametrize("edge", ["ftp://cp.example.com", "https://", "://x"])
def test_resolve_edge_url_refuses_nonsense(edge):
    with pytest.raises(ValueError):
        resolve_edge_url(edge, TOKEN)


def test_resolve_edge_url_needs_an_address():
    with pytest.raises(ValueError, match="pass --edge"):
        resolve_edge_url(None, TOKEN)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("a.localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("cp.example.com")
