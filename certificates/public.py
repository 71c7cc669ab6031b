"""Public downloads of the Origin CA: the trusted roots (PEM bundle, also at a well-known URL) and each root's CRL.
They hold nothing secret and are the same for everyone, so they need no sign-in (origins and scripts fetch them)."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from certificates import ca
from certificates.models import OriginCARoot


@require_safe
def roots_pem(request: HttpRequest) -> HttpResponse:
    ca.ensure_roots()
    response = HttpResponse(ca.trust_bundle())
    response["Content-Type"] = "application/x-pem-file"
    response["Content-Disposition"] = 'attachment; filename="origin-ca-roots.pem"'
    response["Cache-Control"] = "public, max-age=300"
    return response


@require_safe
def root_crl(request: HttpRequest, root_file: str) -> HttpResponse:
    stem, _, extension = root_file.partition(".")
    try:
        root_id = uuid.UUID(hex=stem)
    except ValueError:
        raise Http404("No such CRL.") from None
    root = OriginCARoot.objects.filter(pk=root_id).first()
    if root is None or extension != "crl":
        raise Http404("No such CRL.")
    response = HttpResponse(ca.root_crl_der(root), content_type="application/pkix-crl")
    response["Cache-Control"] = "public, max-age=60"
    return response
