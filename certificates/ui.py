"""Certificates pages under /o/<account_id>/: the organisation's certificates, one zone's with its Create button,
a certificate (live status while issuing, downloads, the generated key once, revoke)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.generic import FormView, TemplateView

from certificates import ca, services
from certificates.forms import CertificateCreateForm
from certificates.logic import pki
from certificates.models import OriginCertificate
from certificates.selectors import certificate_list, expiry_badge
from controlplane.choices import Level, Resource, ZoneStatus
from controlplane.errors import NotFound
from controlplane.models import Zone
from controlplane.ui.mixins import OrgRequiredMixin, apply_service_error


def _rows(certificates: Any) -> list[dict[str, Any]]:
    rows = []
    for certificate in certificates:
        badge_class, badge = expiry_badge(certificate)
        rows.append({"certificate": certificate, "badge_class": badge_class, "badge": badge})
    return rows


class CertificatesMixin(OrgRequiredMixin):
    resource = Resource.CERTIFICATES
    nav = "certificates"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["can_edit"] = self.access.can(Resource.CERTIFICATES, Level.EDIT)
        return context

    def zone(self, zone_id: str) -> Zone:
        return self.get_org_object(Zone, zone_id)

    def certificate(self, certificate_id: str) -> OriginCertificate:
        if not str(certificate_id).isdigit():
            raise NotFound("No such certificate in this organisation.")
        certificate = (
            OriginCertificate.objects.for_org(self.organisation)
            .select_related("zone", "root", "organisation")
            .filter(pk=certificate_id)
            .first()
        )
        if certificate is None:
            raise NotFound("No such certificate in this organisation.")
        return certificate


class CertificateListView(CertificatesMixin, TemplateView):
    template_name = "certificates/ui/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        zones = Zone.objects.for_org(self.organisation).filter(status=ZoneStatus.ACTIVE).order_by("name")
        certificates = certificate_list(organisations=[self.organisation]).select_related("zone")
        context.update(zones=list(zones), rows=_rows(certificates), roots=ca.trusted_roots())
        return context


class ZoneCertificatesView(CertificatesMixin, TemplateView):
    template_name = "certificates/ui/zone.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        zone = self.zone(kwargs["zone_id"])
        certificates = certificate_list(organisations=[self.organisation], zone=zone).select_related("zone")
        context.update(zone=zone, rows=_rows(certificates))
        return context


class CertificateCreateView(CertificatesMixin, FormView):
    template_name = "certificates/ui/create.html"
    form_class = CertificateCreateForm

    def required_scope(self, request: HttpRequest) -> tuple[str, str]:
        return Resource.CERTIFICATES, Level.EDIT  # the form too: it is only for those who can create

    def setup_zone(self) -> Zone:
        zone = self.zone(self.kwargs["zone_id"])
        if zone.status != ZoneStatus.ACTIVE:
            raise NotFound("Certificates are issued only for active zones: verify this zone first.")
        return zone

    def get_initial(self) -> dict[str, Any]:
        return {**super().get_initial(), "hostnames": "\n".join(services.default_hostnames(self.setup_zone()))}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["zone"] = self.setup_zone()
        return context

    def form_valid(self, form: CertificateCreateForm) -> HttpResponse:
        self.setup_zone()
        data = form.cleaned_data
        try:
            certificate = services.certificate_create(
                organisation=self.organisation,
                actor=self.actor,
                hostnames=form.hostname_list(),
                request_type=data["key_type"],
                requested_validity=data["validity"],
                csr=data["csr"] if data["mode"] == "csr" else None,
            )
        except (ValidationError, PermissionDenied) as exc:
            apply_service_error(form, exc, {"requested_validity": "validity", "request_type": "key_type"})
            return self.form_invalid(form)
        return redirect("ui:certificate", account_id=self.organisation.account_id, certificate_id=certificate.id)


class CertificateDetailView(CertificatesMixin, TemplateView):
    template_name = "certificates/ui/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        certificate = self.certificate(kwargs["certificate_id"])
        badge_class, badge = expiry_badge(certificate)
        context.update(certificate=certificate, badge_class=badge_class, badge=badge)
        return context


class CertificateKeyView(CertificatesMixin, TemplateView):
    """The generated private key, once: taken out of the database as this page renders (POST, so that no
    prefetcher or reload can consume it)."""

    template_name = "certificates/ui/key.html"
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        certificate = self.certificate(kwargs["certificate_id"])
        key = services.certificate_key_take(certificate=certificate, actor=self.actor)
        if key is None:
            messages.info(request, "The private key was already shown once and is no longer stored.")
            return redirect("ui:certificate", account_id=self.organisation.account_id, certificate_id=certificate.id)
        context = self.get_context_data(certificate=certificate, key=key, **kwargs)
        return render(request, self.template_name, context)


DOWNLOADS = {
    "pem": ("application/x-pem-file", "pem"),
    "chain": ("application/x-pem-file", "chain.pem"),
    "der": ("application/pkix-cert", "der"),
    "p7b": ("application/x-pkcs7-certificates", "p7b"),
}


class CertificateDownloadView(CertificatesMixin, TemplateView):
    http_method_names = ["get"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        certificate = self.certificate(kwargs["certificate_id"])
        kind = request.GET.get("format", "pem")
        if kind not in DOWNLOADS or not certificate.certificate_pem or certificate.root is None:
            raise NotFound("This certificate has no such download.")
        pem, root = certificate.certificate_pem, certificate.root.certificate_pem
        body: bytes | str
        if kind == "pem":
            body = pem
        elif kind == "chain":
            body = pem + root
        elif kind == "der":
            body = pki.pem_to_der(pem)
        else:
            body = pki.pkcs7_bundle([pem, root])
        content_type, extension = DOWNLOADS[kind]
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="origin-{certificate.id[:16]}.{extension}"'
        return response


class CertificateRevokeView(CertificatesMixin, TemplateView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        certificate = self.certificate(kwargs["certificate_id"])
        if certificate.revoked_at is not None:
            messages.info(request, "This certificate was already revoked.")
        else:
            services.certificate_revoke(certificate=certificate, actor=self.actor)
            messages.success(request, "The certificate is revoked; its serial is in the Origin CA's CRL.")
        return redirect("ui:certificate", account_id=self.organisation.account_id, certificate_id=certificate.id)
