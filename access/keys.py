"""The organisation's signing keys and the tokens they sign (RS256 JWTs in Cloudflare Access's shape).

One key signs; after a rotation the previous key still verifies for GRACE (7 days), and both are published in the
JWKS (`/cdn-cgi/access/certs` on the team domain) so an origin that validates Cloudflare Access tokens validates
ours unchanged. Private keys are encrypted at rest with the installation's data encryption keys."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from functools import lru_cache
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.models import SigningKey
from controlplane.crypto import decrypt_bytes, encrypt_bytes
from controlplane.models import Organisation
from controlplane.teams import team_url

GRACE = datetime.timedelta(days=7)
ALGORITHM = "RS256"


def issuer(organisation: Organisation) -> str:
    return team_url(organisation.team_name)


def subject_id(organisation_id: Any, email: str) -> str:
    """`sub`: stable for one email in one organisation, as Cloudflare's user UUID."""
    return str(uuid.uuid5(uuid.UUID(str(organisation_id)), email.lower()))


def _new_key(organisation: Organisation) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = hashlib.sha256(der).hexdigest()
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation.team_name}.{settings.AUTH_DOMAIN}")])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(
        organisation=organisation,
        kid=kid,
        private_key_ciphertext=encrypt_bytes(pem),
        public_jwk=jwk,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
    )


def current_key(organisation: Organisation) -> SigningKey:
    """The key that signs now, created on first use."""
    key = SigningKey.objects.for_org(organisation).filter(retired_at__isnull=True).first()
    if key is not None:
        return key
    fresh = _new_key(organisation)
    try:
        with transaction.atomic():
            if not SigningKey.objects.for_org(organisation).filter(retired_at__isnull=True).exists():
                fresh.save()
                return fresh
    except IntegrityError:
        pass
    return SigningKey.objects.for_org(organisation).filter(retired_at__isnull=True).first() or fresh


def rotate_key(organisation: Organisation) -> SigningKey:
    """Retire the signing key (it still verifies for 7 days) and start signing with a new one."""
    fresh = _new_key(organisation)
    with transaction.atomic():
        now = timezone.now()
        SigningKey.objects.for_org(organisation).filter(retired_at__isnull=True).update(retired_at=now)
        SigningKey.objects.for_org(organisation).filter(retired_at__lt=now - GRACE).delete()
        fresh.save()
    return fresh


def verifying_keys(organisation: Organisation) -> list[SigningKey]:
    """The current key and those retired less than GRACE ago (the JWKS)."""
    current_key(organisation)
    cutoff = timezone.now() - GRACE
    return [
        key
        for key in SigningKey.objects.for_org(organisation).order_by("-created_at")
        if key.retired_at is None or key.retired_at > cutoff
    ]


def jwks(organisation: Organisation) -> dict[str, Any]:
    keys = verifying_keys(organisation)
    certs = [{"kid": key.kid, "cert": key.certificate_pem} for key in keys]
    return {"keys": [key.public_jwk for key in keys], "public_cert": certs[0], "public_certs": certs}


@lru_cache(maxsize=256)
def _private_key(kid: str, ciphertext: str) -> Any:
    return serialization.load_pem_private_key(decrypt_bytes(ciphertext, what="An Access signing key"), password=None)


def sign(organisation: Organisation, claims: dict[str, Any]) -> str:
    """Sign with the current key, rotating it first when it is older than the organisation's interval (so that keys
    rotate in embedded mode too, where no Celery beat runs)."""
    from access.models import AccessSettings

    key = current_key(organisation)
    interval = (
        AccessSettings.objects.for_org(organisation).values_list("key_rotation_interval_days", flat=True).first() or 42
    )
    if key.created_at + datetime.timedelta(days=interval) <= timezone.now():
        key = rotate_key(organisation)
    return jwt.encode(claims, _private_key(key.kid, key.private_key_ciphertext), ALGORITHM, headers={"kid": key.kid})


def identity_claims(
    organisation: Organisation,
    *,
    kind: str,
    audience: list[str],
    email: str,
    seconds: int,
    country: str = "",
    nonce: str = "",
) -> dict[str, Any]:
    now = int(timezone.now().timestamp())
    claims: dict[str, Any] = {
        "aud": audience,
        "email": email,
        "exp": now + max(seconds, 1),
        "iat": now,
        "nbf": now,
        "iss": issuer(organisation),
        "type": kind,
        "identity_nonce": nonce or uuid.uuid4().hex,
        "sub": subject_id(organisation.pk, email),
    }
    if country:
        claims["country"] = country
    return claims


def service_token_claims(organisation: Organisation, *, audience: list[str], client_id: str, seconds: int) -> dict:
    now = int(timezone.now().timestamp())
    return {
        "aud": audience,
        "exp": now + seconds,
        "iat": now,
        "nbf": now,
        "iss": issuer(organisation),
        "type": "app",
        "common_name": client_id,
        "sub": "",
    }


def public_keys(keys: list[SigningKey]) -> dict[str, Any]:
    """kid -> a public key object PyJWT verifies with."""
    return {key.kid: jwt.algorithms.RSAAlgorithm.from_jwk(key.public_jwk) for key in keys}


def org_audience(organisation_id: Any) -> str:
    """The audience of the organisation's global session token (the team domain's own cookie)."""
    return hashlib.sha256(f"org:{organisation_id}".encode()).hexdigest()


def verify(token: str, keys: dict[str, Any], *, audience: str, issuer_url: str) -> dict[str, Any]:
    """The claims of a valid token, or jwt.InvalidTokenError. RS256 only (`alg: none` or HS256 are refused)."""
    header = jwt.get_unverified_header(token)
    key = keys.get(str(header.get("kid", "")))
    if key is None:
        raise jwt.InvalidTokenError("unknown signing key")
    options = {"require": ["exp", "iat", "iss", "aud"]}
    try:
        return jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer_url, options=options, leeway=5
        )
    except jwt.InvalidTokenError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # a well-formed but hostile token must never escape as a 500
        raise jwt.InvalidTokenError(str(exc)) from None
