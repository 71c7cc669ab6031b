"""`/client/v4/certificates`: the path names no account. A create finds the organisation from the hostnames' zones,
a list from `zone_id`, a certificate from its serial, each among the organisations the caller can act in; then
the caller's `certificates` scope in that organisation is checked (404 for another tenant's, as everywhere)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from certificates import ca, services
from certificates.api.serializers import (
    CertificateCreateSerializer,
    CertificateListQuery,
    CertificateSerializer,
    RevokedSerializer,
    RootSerializer,
)
from certificates.models import OriginCertificate
from certificates.selectors import certificate_get, certificate_list
from controlplane.access import OrgAccess, resolve_org_access
from controlplane.api.base import OrgScopedAPIView, OrgScopedMixin, PrincipalView, request_token, request_user
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.permissions import IsAuthenticatedPrincipal
from controlplane.api.schema import errors
from controlplane.api.serializers.common import validated_query
from controlplane.choices import Level, Resource, ZoneStatus
from controlplane.models import Organisation, Zone
from controlplane.selectors import zone_get
from controlplane.validators import normalise_hostname


def _access(request: Request, organisation_id: Any, level: str) -> OrgAccess:
    access = resolve_org_access(
        user=request_user(request), token=request_token(request), account_id=organisation_id.hex
    )
    access.require(Resource.CERTIFICATES, level)
    return access


def _organisation_for(hostnames: list[Any], organisations: list[Organisation]) -> Organisation | None:
    """The organisation the certificate is for: the caller's only one (always so for a token), else the one with
    an active zone over the first hostname that has one. The service then checks every name against it."""
    if len(organisations) <= 1:
        return organisations[0] if organisations else None
    zones = sorted(
        Zone.objects.for_orgs(organisations).filter(status=ZoneStatus.ACTIVE).select_related("organisation"),
        key=lambda zone: -len(zone.name),
    )
    for raw in hostnames:
        try:
            name = normalise_hostname(str(raw).strip().removeprefix("*."))
        except DjangoValidationError:
            continue
        for zone in zones:
            if zone.covers(name):
                return zone.organisation
    return organisations[0]


class CertificateListView(PrincipalView):
    pagination_class = V4Pagination

    @extend_schema(
        summary="List origin certificates",
        description="Certificates of the zone `zone_id` (revoked ones included, with `revoked_at`).",
        parameters=[CertificateListQuery],
        responses={200: CertificateSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        zone_id = validated_query(CertificateListQuery, request).get("zone_id")
        if zone_id:
            zone = zone_get(organisations=self.accessible_organisations(), zone_id=zone_id)
            _access(request, zone.organisation_id, Level.READ)
            items = certificate_list(organisations=[zone.organisation], zone=zone)
        else:
            readable = [org for org in self.accessible_organisations() if self._can_read(request, org)]
            items = certificate_list(organisations=readable)
        return paginated_response(request, items, CertificateSerializer, view=self)

    @staticmethod
    def _can_read(request: Request, organisation: Organisation) -> bool:
        token = request_token(request)
        if token is not None:
            return f"{Resource.CERTIFICATES}:{Level.READ}" in token.scopes
        return True  # every role reads certificates

    @extend_schema(
        summary="Create an origin certificate",
        description="Signs the CSR for the hostnames (each under an active zone of one of the caller's accounts). "
        "The issuing job runs in Celery; the answer waits for it up to CERTIFICATE_ISSUE_WAIT_SECONDS and then "
        "returns the certificate `pending` (empty `certificate`): GET it again later.",
        request=CertificateCreateSerializer,
        responses={200: CertificateSerializer, **errors(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        serializer = CertificateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organisation = _organisation_for(data["hostnames"], self.accessible_organisations())
        if organisation is None:
            raise ValidationError({"hostnames": ["You are not a member of any account."]})
        access = _access(request, organisation.pk, Level.EDIT)
        certificate = services.certificate_create(
            organisation=access.organisation,
            actor=self.actor,
            hostnames=data["hostnames"],
            request_type=data["request_type"],
            requested_validity=data["requested_validity"],
            csr=data["csr"],
        )
        certificate = services.certificate_wait(certificate, seconds=settings.CERTIFICATE_ISSUE_WAIT_SECONDS)
        return Response(CertificateSerializer(certificate).data)


class CertificateScopedView(OrgScopedMixin, APIView):
    """`/certificates/{certificate_id}`: the certificate is found among the caller's organisations before any
    handler runs (404 otherwise), then the `certificates` scope is checked in its organisation."""

    permission_classes: ClassVar[list[Any]] = [IsAuthenticatedPrincipal]
    resource: ClassVar[str] = Resource.CERTIFICATES
    certificate: OriginCertificate

    def resolve_access(self, request: Request, **kwargs: Any) -> OrgAccess:
        from controlplane.access import accessible_organisations

        user, token = request_user(request), request_token(request)
        organisations = accessible_organisations(user=user, token=token)
        certificate = certificate_get(organisations=organisations, certificate_id=kwargs.get("certificate_id"))
        access = resolve_org_access(user=user, token=token, account_id=certificate.organisation_id.hex)
        self.certificate = certificate
        return access


class CertificateDetailView(CertificateScopedView):
    @extend_schema(summary="Get an origin certificate", responses={200: CertificateSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, certificate_id: str) -> Response:
        return Response(CertificateSerializer(self.certificate).data)

    @extend_schema(
        summary="Revoke an origin certificate",
        description="Permanent: the serial is published in the Origin CA's CRL.",
        responses={200: RevokedSerializer, **errors(401, 403, 404)},
    )
    def delete(self, request: Request, certificate_id: str) -> Response:
        certificate = services.certificate_revoke(certificate=self.certificate, actor=self.actor)
        return Response({"id": certificate.id, "revoked_at": certificate.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ")})


class OriginCARootListView(PrincipalView):
    """The Origin CA's trusted roots (the same for every caller; also public at /origin-ca/roots.pem)."""

    @extend_schema(summary="Origin CA roots", responses={200: RootSerializer(many=True), **errors(401)})
    def get(self, request: Request) -> Response:
        ca.ensure_roots()
        return Response(RootSerializer(ca.trusted_roots(), many=True).data)


class AccountCertificateListView(OrgScopedAPIView):
    """Ours, in the UI's terms: every origin certificate of one account (all its zones)."""

    resource = Resource.CERTIFICATES
    pagination_class = V4Pagination

    @extend_schema(
        summary="List an account's origin certificates",
        responses={200: CertificateSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        items = certificate_list(organisations=[self.organisation])
        return paginated_response(request, items, CertificateSerializer, view=self)


class AccountCertificateDetailView(OrgScopedAPIView):
    resource = Resource.CERTIFICATES

    @extend_schema(
        summary="Get one of an account's origin certificates",
        responses={200: CertificateSerializer, **errors(401, 403, 404)},
    )
    def get(self, request: Request, account_id: str, certificate_id: str) -> Response:
        certificate = certificate_get(organisations=[self.organisation], certificate_id=certificate_id)
        return Response(CertificateSerializer(certificate).data)
