"""The Origin CA's cryptography, on `cryptography` alone (no database): keys, CSRs, roots, leaves, CRLs and the
download formats. Pure functions, so the issuing job, the benchmark and the tests share them."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_VALIDITY = datetime.timedelta(days=25 * 365)
BACKDATE = datetime.timedelta(minutes=5)  # tolerate origins whose clocks run a little behind
LEAF_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zero Trust Control Plane"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Origin CA"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Origin Certificate"),
    ]
)
ROOT_NAMES = {
    "rsa": "Origin SSL Certificate Authority",
    "ecc": "Origin SSL ECC Certificate Authority",
}
EC_CURVES_ACCEPTED = {"secp256r1": "P-256", "secp384r1": "P-384"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CSRError(ValueError):
    """A pasted CSR that cannot be used; the message says why, for the person who pasted it."""


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_key(pem: str | bytes, *, trusted: bool = False) -> PrivateKey:
    """`trusted`: a key we generated and stored encrypted ourselves, whose RSA consistency check can be skipped."""
    key = serialization.load_pem_private_key(
        pem.encode() if isinstance(pem, str) else pem, password=None, unsafe_skip_rsa_key_validation=trusted
    )
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return key


def build_csr(key: PrivateKey, hostnames: Sequence[str]) -> str:
    """The CSR we make for "generate the private key for me" (the API returns it as `csr`)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0][:64])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in hostnames]), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    """A CSR we accept: PEM that parses, whose self-signature is valid, over an RSA key of at least 2048 bits or an
    EC key on P-256 or P-384."""
    text = (pem or "").strip()
    if not text:
        raise CSRError(
            "The CSR is empty: paste a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)."
        )
    if len(text) > 64 * 1024:
        raise CSRError("The CSR is too large (at most 64 KiB).")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except (ValueError, TypeError):
        raise CSRError(
            "The CSR is not a valid PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)."
        ) from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError):
        valid = False
    if not valid:
        raise CSRError("The CSR's signature does not verify: it was not signed by the key it contains.")
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError):
        raise CSRError("The CSR's public key cannot be read.") from None
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise CSRError(f"The CSR's RSA key has {public_key.key_size} bits: at least 2048 are required.")
        if public_key.key_size > 8192:
            raise CSRError(f"The CSR's RSA key has {public_key.key_size} bits: at most 8192 are accepted.")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in EC_CURVES_ACCEPTED:
            raise CSRError(f"The CSR's EC key is on {public_key.curve.name}: use P-256 or P-384.")
    else:
        raise CSRError("The CSR's key must be RSA (2048 bits or more) or ECDSA (P-256 or P-384).")
    return csr


def csr_key_type(csr: x509.CertificateSigningRequest) -> str:
    return "rsa" if isinstance(csr.public_key(), rsa.RSAPublicKey) else "ecc"


def _ski(public_key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


@dataclass(frozen=True)
class NewRoot:
    certificate_pem: str
    key_pem: str
    fingerprint_sha256: str
    not_after: datetime.datetime


def create_root(key_type: str, *, organisation_name: str, now: datetime.datetime | None = None) -> NewRoot:
    """A self-signed root: CA, may sign certificates and CRLs, no path length below it (leaves only)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = generate_key(key_type)
    label = ROOT_NAMES[key_type]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, label),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation_name[:40]} {label}"[:64]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return NewRoot(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key_pem(key),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_after=cert.not_valid_after_utc,
    )


def sign_leaf(
    *,
    csr: x509.CertificateSigningRequest,
    hostnames: Sequence[str],
    serial: int,
    validity_days: int,
    root_certificate_pem: str,
    root_key: PrivateKey,
    crl_url: str,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Sign the CSR's key for `hostnames` (the validated list: the CSR's own names are ignored, as Cloudflare
    does), straight under the root (no intermediate), never outliving the root."""
    now = now or datetime.datetime.now(datetime.UTC)
    root = x509.load_pem_x509_certificate(root_certificate_pem.encode())
    not_after = min(now + datetime.timedelta(days=validity_days), root.not_valid_after_utc)
    public_key = csr.public_key()
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(LEAF_SUBJECT)
        .issuer_name(root.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in hostnames]), critical=False)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
    return builder.sign(root_key, hashes.SHA256())


def verify_chain(leaf_pem: str, root_pem: str, hostname: str | None = None) -> None:
    """cryptography's own path validation of a leaf under a root (raises on failure): what the tests check every
    issued certificate with."""
    from cryptography.x509.verification import PolicyBuilder, Store

    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    root = x509.load_pem_x509_certificate(root_pem.encode())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(hostname or _first_name(leaf)))
    verifier.verify(leaf, [])


def _first_name(cert: x509.Certificate) -> str:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return names[0].replace("*.", "wildcard-check.", 1)


def build_crl(
    *,
    root_certificate_pem: str,
    root_key: PrivateKey,
    revoked: Sequence[tuple[int, datetime.datetime]],
    number: int,
    now: datetime.datetime | None = None,
    next_update: datetime.timedelta = datetime.timedelta(days=7),
) -> x509.CertificateRevocationList:
    now = now or datetime.datetime.now(datetime.UTC)
    root = x509.load_pem_x509_certificate(root_certificate_pem.encode())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at).build()
        )
    return builder.sign(root_key, hashes.SHA256())


# --- download formats ---------------------------------------------------------------------------------------------


def pem_to_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def pkcs7_bundle(pems: Sequence[str]) -> bytes:
    """A certs-only PKCS#7 (.p7b, DER) holding the certificate and its root: what Windows and Tomcat import."""
    certs = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    return pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
