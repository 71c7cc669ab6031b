"""The account's audit log (read only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.audit import AuditLogQuery, AuditLogSerializer
from controlplane.choices import Resource
from controlplane.selectors import audit_event_list


class AuditLogListView(OrgScopedAPIView):
    resource = Resource.AUDIT
    pagination_class = V4Pagination

    @extend_schema(
        summary="List audit log events",
        description="Newest first unless `direction=asc`. Every change made through the UI, the API, the command "
        "line or by the system is here, with who made it and from where.",
        parameters=[AuditLogQuery],
        responses={200: AuditLogSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        events = audit_event_list(organisation=self.organisation, **AuditLogQuery.parse(request))
        return paginated_response(request, events, AuditLogSerializer, view=self)
