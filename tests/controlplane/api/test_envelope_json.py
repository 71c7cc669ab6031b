"""The API's JSON (controlplane/api/envelope.py, EnvelopeRenderer) is DRF's JSONRenderer's, byte for byte: the
renderer only puts the common types first."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import ipaddress
import json
import uuid
import zoneinfo

import orjson
import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from controlplane.api.envelope import EnvelopeRenderer, envelope, float_free
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


class Level(enum.IntEnum):
    HIGH = 3


# Every kind of value without a float, as the views marked `float_free` give them and more: the text of each must be
# DRF's whether orjson or json.dumps writes it.
EVERY_CHARACTER = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF)
FLOAT_FREE = {
    **{key: value for key, value in PAYLOAD.items() if key not in ("numbers", "decimal")},
    "numbers": [0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, True, False, None],
    "characters": EVERY_CHARACTER,
    "keys": {EVERY_CHARACTER[:300]: 1, "": 2, "é\u2028": 3},
    "zones": [
        datetime.datetime(2026, 1, 5, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/London")),  # offset 0, not UTC
        datetime.datetime(2026, 1, 5, 12, 0, tzinfo=zoneinfo.ZoneInfo("UTC")),
        datetime.datetime(2026, 1, 5, 12, 0, 0, 1, tzinfo=datetime.timezone(datetime.timedelta(0))),
        datetime.datetime(2026, 1, 5, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))),
        datetime.datetime(2026, 1, 5, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(seconds=3723))),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ],
    "enums": [TunnelStatus.DOWN, Level.HIGH],
    "drf": ReturnDict({"a": ReturnList([1, "b"], serializer=None)}, serializer=None),
    "tuple": (1, (2, "three")),
    "deep": [[[[{"x": [uuid.UUID(int=0)]}]]]],
}


def _nested(depth):
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def _drf(data):
    return JSONRenderer().render(envelope(data), "application/json", {})


def _float_free(data):
    return EnvelopeRenderer().render(data, "application/json", {"response": float_free(Response(data))})


@pytest.mark.parametrize("key", sorted(FLOAT_FREE))
def test_a_float_free_response_has_drfs_bytes(key):
    data = {key: FLOAT_FREE[key]}
    assert _float_free(data) == _drf(data)


def test_a_float_free_response_is_written_by_orjson_and_why_it_must_hold_no_float():
    # A float is what orjson writes differently (its exponent): seen here, it shows orjson wrote the response, and
    # why only a response that holds no float may be marked.
    data = {"ratio": 1e16, "text": "a\u2028b"}
    assert b'"ratio":1e16' in _float_free(data) and b'"text":"a\\u2028b"' in _float_free(data)
    assert orjson.dumps(1e16) != json.dumps(1e16).encode()
    unmarked = EnvelopeRenderer().render(data, "application/json", {"response": Response(data)})
    assert unmarked == _drf(data) and b'"ratio":1e+16' in unmarked


@pytest.mark.parametrize(
    "data",
    [
        {"big": 2**64},  # over orjson's integers
        {"keys": {1: "a", None: "b", False: "c", 2.5: "d"}},  # keys json.dumps turns into text
        {"nested": _nested(300)},  # deeper than orjson goes
    ],
)
def test_what_orjson_refuses_is_written_by_json_dumps_as_drf_writes_it(data):
    assert _float_free(data) == _drf(data)


def test_what_drf_refuses_is_refused_on_the_float_free_path_too():
    @dataclasses.dataclass
    class Point:
        x: int

    for bad in ({"x": object()}, {"p": Point(1)}, {"s": "\ud800"}):
        with pytest.raises((TypeError, ValueError)):
            _drf(bad)
        with pytest.raises((TypeError, ValueError)):
            _float_free(bad)
