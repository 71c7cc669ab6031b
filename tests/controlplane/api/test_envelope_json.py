"""The API's JSON (controlplane/api/envelope.py, EnvelopeRenderer) is DRF's JSONRenderer's, byte for byte: the
renderer only puts the common types first."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
import zoneinfo

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from controlplane.api.envelope import EnvelopeRenderer, envelope
from tunnels.choices import TunnelStatus

PAYLOAD = {
    "id": uuid.UUID("91c3bb23-c181-42c9-bf5a-4c9ac53b665e"),
    "utc": datetime.datetime(2026, 12, 3, 15, 38, 3, 217464, tzinfo=datetime.UTC),
    "utc_whole_second": datetime.datetime(2026, 12, 3, 15, 38, 3, tzinfo=datetime.UTC),
    "paris": datetime.datetime(2026, 7, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
    "date": datetime.date(2026, 1, 2),
    "time": datetime.time(3, 4, 5),
    "duration": datetime.timedelta(minutes=90),
    "decimal": decimal.Decimal("1.50"),
    "address": ipaddress.ip_address("203.0.113.7"),
    "network": ipaddress.ip_network("10.0.0.0/8"),
    "lazy": gettext_lazy("Not found."),
    "status": TunnelStatus.HEALTHY,
    "text": 'café \u2028 \u2029 "quoted" \\ \n',
    "numbers": [1, 2.5, -0.0, True, False, None],
    "nested": [{"when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "ids": [uuid.uuid4(), uuid.uuid4()]}],
    "empty": {},
}


@pytest.mark.parametrize("result_info", [None, {"page": 1, "per_page": 20, "count": 0, "total_count": 0}])
def test_the_bytes_are_drfs(result_info):
    response = Response(PAYLOAD)
    if result_info:
        response.result_info = result_info
    ours = EnvelopeRenderer().render(PAYLOAD, "application/json", {"response": response})
    drfs = JSONRenderer().render(envelope(PAYLOAD, result_info=result_info), "application/json", {})
    assert ours == drfs
    assert b"\\u2028" in ours and b'"utc":"2026-12-03T15:38:03.217464Z"' in ours


def test_indentation_asked_for_is_still_drfs():
    ours = EnvelopeRenderer().render(PAYLOAD, "application/json; indent=2", {"response": Response(PAYLOAD)})
    assert ours == JSONRenderer().render(envelope(PAYLOAD), "application/json; indent=2", {})
    assert b'\n  "success": true' in ours


def test_an_unknown_type_is_refused_as_drf_refuses_it():
    with pytest.raises(TypeError):
        EnvelopeRenderer().render({"x": object()}, "application/json", {"response": Response({})})
