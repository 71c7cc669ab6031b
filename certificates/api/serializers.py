"""Origin CA certificates in Cloudflare's v4 shape (`/certificates`)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from certificates.choices import DEFAULT_VALIDITY_DAYS, VALIDITY_DAYS
from certificates.models import OriginCertificate


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


class CertificateCreateSerializer(serializers.Serializer):
    csr = serializers.CharField(trim_whitespace=False, max_length=64 * 1024)
    hostnames = serializers.ListField(child=serializers.CharField(max_length=300), max_length=1000)
    request_type = serializers.ChoiceField(choices=["origin-rsa", "origin-ecc", "keyless-certificate"])
    requested_validity = serializers.ChoiceField(
        choices=list(VALIDITY_DAYS), required=False, default=DEFAULT_VALIDITY_DAYS
    )

    def validate_requested_validity(self, value: Any) -> int:
        return int(value)


class CertificateListQuery(serializers.Serializer):
    zone_id = serializers.CharField(
        required=False,
        help_text="The zone whose certificates to list (Cloudflare "
        "requires it; without it every certificate the caller may read is listed).",
    )


class CertificateSerializer(serializers.ModelSerializer):
    """Cloudflare's fields (`id` is the serial), then ours: status of the issuing job, revocation, the zone."""

    certificate = serializers.CharField(source="certificate_pem")
    expires_on = serializers.SerializerMethodField()
    revoked_at = serializers.SerializerMethodField()
    created_on = serializers.SerializerMethodField()
    zone_id = serializers.SerializerMethodField()
    csr = serializers.SerializerMethodField()

    class Meta:
        model = OriginCertificate
        fields = [
            "id",
            "certificate",
            "csr",
            "hostnames",
            "request_type",
            "requested_validity",
            "expires_on",
            "status",
            "failure_reason",
            "revoked_at",
            "created_on",
            "zone_id",
        ]

    def get_expires_on(self, obj: OriginCertificate) -> str | None:
        return _iso(obj.expires_on)

    def get_revoked_at(self, obj: OriginCertificate) -> str | None:
        return _iso(obj.revoked_at)

    def get_created_on(self, obj: OriginCertificate) -> str | None:
        return _iso(obj.created_at)

    def get_zone_id(self, obj: OriginCertificate) -> str | None:
        return obj.zone_id.hex if obj.zone_id else None

    def get_csr(self, obj: OriginCertificate) -> str:
        # Lists defer the CSR (they never show it); the detail and the create carry it.
        return "" if "csr" in obj.get_deferred_fields() else obj.csr


class RevokedSerializer(serializers.Serializer):
    id = serializers.CharField()
    revoked_at = serializers.CharField()


class RootSerializer(serializers.Serializer):
    id = serializers.SerializerMethodField()
    key_type = serializers.CharField()
    status = serializers.CharField()
    certificate = serializers.CharField(source="certificate_pem")
    fingerprint_sha256 = serializers.CharField()
    expires_on = serializers.SerializerMethodField()
    crl_url = serializers.SerializerMethodField()

    def get_id(self, obj: Any) -> str:
        return obj.pk.hex

    def get_expires_on(self, obj: Any) -> str | None:
        return _iso(obj.not_after)

    def get_crl_url(self, obj: Any) -> str:
        from certificates.ca import crl_url

        return crl_url(obj)
