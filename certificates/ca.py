"""The installation-wide Origin CA: its roots (created on first use, rotated and retired by the operator), the
trust bundle connectors and origins get, and the CRLs. No organisation owns any of it."""

from __future__ import annotations

import functools
import logging
import time
import uuid

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from certificates.choices import KeyType, RootStatus
from certificates.logic import pki
from certificates.models import OriginCARoot, OriginCertificate
from controlplane.crypto import fernet

log = logging.getLogger(__name__)


def encrypt_key(pem: str) -> str:
    return fernet().encrypt(pem.encode()).decode()


def decrypt_key(ciphertext: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise RuntimeError("An Origin CA key cannot be decrypted: DATA_ENCRYPTION_KEYS lost the key it used") from None


def _new_root(key_type: str, status: str = RootStatus.SIGNING) -> OriginCARoot:
    created = pki.create_root(key_type, organisation_name=settings.ORIGIN_CA_NAME)
    return OriginCARoot.objects.create(
        key_type=key_type,
        status=status,
        certificate_pem=created.certificate_pem,
        key_ciphertext=encrypt_key(created.key_pem),
        fingerprint_sha256=created.fingerprint_sha256,
        not_after=created.not_after,
        status_changed_at=timezone.now(),
    )


@functools.lru_cache(maxsize=8)
def _root_key(root_id: uuid.UUID, ciphertext: str) -> pki.PrivateKey:
    return pki.load_key(decrypt_key(ciphertext), trusted=True)


def root_key(root: OriginCARoot) -> pki.PrivateKey:
    """The root's private key, decrypted and parsed once per process (parsing an RSA key checks it, ~10s of ms).
    Keyed by the ciphertext too, so a root re-encrypted under a new DATA_ENCRYPTION_KEYS key is read again."""
    return _root_key(root.pk, root.key_ciphertext)


def signing_root(key_type: str) -> OriginCARoot:
    """The root that signs new certificates of this key type, created on first use. Two workers racing to create
    it: the unique constraint lets one win and the other reads the winner's."""
    root = OriginCARoot.objects.filter(key_type=key_type, status=RootStatus.SIGNING).first()
    if root is not None:
        return root
    try:
        with transaction.atomic():
            root = _new_root(key_type)
            _push_bundle_to_connectors()  # connectors already running learn the new root now
    except IntegrityError:
        return OriginCARoot.objects.get(key_type=key_type, status=RootStatus.SIGNING)
    log.info("Created the Origin CA %s root %s", key_type, root.fingerprint_sha256)
    return root


def ensure_roots() -> list[OriginCARoot]:
    return [signing_root(key_type) for key_type in KeyType.values]


def root_rotate(key_type: str) -> OriginCARoot:
    """A new signing root; the old one stays trusted (its certificates keep working) until it is retired. Every
    tunnel's configuration version is bumped so that running connectors receive the new trust bundle."""
    with transaction.atomic():
        OriginCARoot.objects.filter(key_type=key_type, status=RootStatus.SIGNING).update(
            status=RootStatus.TRUSTED, status_changed_at=timezone.now()
        )
        root = _new_root(key_type)
        _push_bundle_to_connectors()
    return root


def root_retire(root: OriginCARoot) -> OriginCARoot:
    """Stop trusting a replaced root (its certificates then fail verification at connectors)."""
    if root.status == RootStatus.SIGNING:
        raise ValueError("The signing root cannot be retired: rotate first (a new root then signs).")
    with transaction.atomic():
        OriginCARoot.objects.filter(pk=root.pk).update(status=RootStatus.RETIRED, status_changed_at=timezone.now())
        _push_bundle_to_connectors()
    root.refresh_from_db()
    return root


def _push_bundle_to_connectors() -> None:
    """Bump every live tunnel's configuration version (the connector applies only newer versions) and announce it,
    so each connected connector gets a CONFIG carrying the new bundle."""
    from django.db.models import F

    from tunnels import events
    from tunnels.models import Tunnel

    live = Tunnel.objects.unscoped("a CA rotation reaches every tunnel").filter(deleted_at__isnull=True)
    live.update(config_version=F("config_version") + 1)
    rows = list(live.values_list("organisation_id", "pk", "config_version"))

    def announce() -> None:
        for organisation_id, tunnel_id, version in rows:
            events.config_changed(organisation_id=organisation_id, tunnel_id=tunnel_id, version=version)

    transaction.on_commit(announce)


def trusted_roots() -> list[OriginCARoot]:
    return list(OriginCARoot.objects.exclude(status=RootStatus.RETIRED).order_by("key_type", "-created_at"))


def trust_bundle() -> str:
    """The PEM bundle of every trusted root (signing and replaced ones); empty until the first certificate created
    them (which pushes the configuration again). Sent with every CONFIG (dataplane/hub.py)."""
    return "".join(root.certificate_pem for root in trusted_roots())


def crl_url(root: OriginCARoot) -> str:
    return f"{settings.PUBLIC_URL}/origin-ca/crl/{root.pk.hex}.crl"


def root_crl_der(root: OriginCARoot) -> bytes:
    """The root's CRL: every certificate it signed that is revoked. The CRL number grows with each revocation (a
    conditional update), so (root, number) names its content: a process signs it once per number and hour, not
    once per (anonymous) request."""
    return _root_crl_der(root.pk, root.crl_number, int(time.time() // 3600))


@functools.lru_cache(maxsize=16)
def _root_crl_der(root_id: uuid.UUID, number: int, hour: int) -> bytes:
    root = OriginCARoot.objects.get(pk=root_id)
    revoked = (
        OriginCertificate.objects.unscoped("a CA's CRL lists every organisation's revoked certificates")
        .filter(root=root, revoked_at__isnull=False)
        .values_list("id", "revoked_at")
        .order_by("revoked_at")
    )
    crl = pki.build_crl(
        root_certificate_pem=root.certificate_pem,
        root_key=root_key(root),
        revoked=[(int(serial), revoked_at) for serial, revoked_at in revoked],
        number=number,
    )
    return crl.public_bytes(serialization.Encoding.DER)
