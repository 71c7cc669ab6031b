"""Fields and serializers shared by the v4 resources: query parameters with dotted names, filter operators,
dates, and the `{id}` result of deletes."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import Field

DIRECTIONS = ["asc", "desc"]


class IdResultSerializer(serializers.Serializer):
    """What a delete (and the zone activation check) returns."""

    id = serializers.CharField()


class QueryParams(serializers.Serializer):
    """Query parameters. The SDK sends nested filters with dots (`account.id=…`), which are not Python names, so
    subclasses declare their fields in `params()`; each field's `source` names its key in `validated_data`."""

    def params(self) -> dict[str, Field]:
        raise NotImplementedError

    def get_fields(self) -> dict[str, Field]:
        return self.params()

    @classmethod
    def parse(cls, request: Any) -> dict[str, Any]:
        """The validated parameters of `request`; 400 naming each bad parameter otherwise."""
        serializer = cls(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


FILTER_OPERATORS = [
    "equal",
    "not_equal",
    "starts_with",
    "ends_with",
    "contains",
    "starts_with_case_sensitive",
    "ends_with_case_sensitive",
    "contains_case_sensitive",
]


@extend_schema_field(
    {
        "type": "string",
        "description": "A value, optionally prefixed by an operator: "
        + ", ".join(f"`{op}:`" for op in FILTER_OPERATORS)
        + " (default `equal`).",
    }
)
class FilterOperatorField(serializers.CharField):
    """`contains:example` → ("contains", "example"); a plain value means "equal"."""

    def to_internal_value(self, data: Any) -> tuple[str, str]:
        text = super().to_internal_value(data)
        operator, sep, value = text.partition(":")
        if sep and operator in FILTER_OPERATORS:
            return operator, value
        return "equal", text


@extend_schema_field(OpenApiTypes.DATETIME)
class DateOrDateTimeField(serializers.Field):
    """An RFC 3339 date-time, or a full date meaning its midnight UTC."""

    default_error_messages = {"invalid": "Give an RFC 3339 date (2024-05-01) or date-time (2024-05-01T12:00:00Z)."}

    def to_internal_value(self, data: Any) -> datetime.datetime:
        text = str(data).strip()
        try:
            moment = parse_datetime(text.replace(" ", "+"))  # a bare '+' in a query string arrives as a space
            if moment is None:
                day = parse_date(text)
                if day is None:
                    raise ValueError
                moment = datetime.datetime.combine(day, datetime.time.min)
        except ValueError:
            self.fail("invalid")
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, datetime.UTC)
        return moment

    def to_representation(self, value: Any) -> Any:
        return value.isoformat() if value else None


class ListOrCommaField(serializers.ListField):
    """A list given as repeated keys (`type=a&type=b`) or comma-separated (`type=a,b`)."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for item in data for part in str(item).split(",") if part.strip()]
        return super().to_internal_value(items)


def direction_field(default: str) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=DIRECTIONS, required=False, default=default, help_text="Sort direction.")
