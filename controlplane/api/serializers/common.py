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
from rest_framework.exceptions import ValidationError
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
        return validated_query(cls, request)


def validated_query(serializer_class: type[serializers.Serializer], request: Any) -> dict[str, Any]:
    """The query parameters of `request` validated by `serializer_class`; 400 naming each bad parameter otherwise.

    DRF reads a query string like a form and takes an empty value (`?status=`) for an absent one; the schema says a
    parameter is non-empty (minLength, an enum, a type) unless its field allows blank, so an empty one is refused.
    """
    if not request.query_params and getattr(serializer_class, "empty_is_constant", False):
        known = _EMPTY_QUERIES.get(serializer_class)
        if known is None:
            known = _EMPTY_QUERIES[serializer_class] = _validated_query(serializer_class, request)
        return dict(known)
    return _validated_query(serializer_class, request)


# serializer class → what an empty query string validates to, for the classes that say it never changes
# (`empty_is_constant = True`: constant defaults, no validate() reading the clock). Building and validating a
# serializer of ten fields was ~10 % of a tunnel list's CPU (issue 13).
_EMPTY_QUERIES: dict[type, dict[str, Any]] = {}


def _validated_query(serializer_class: type[serializers.Serializer], request: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    blank = {
        name: ["This parameter may not be empty."]
        for name, field in serializer.fields.items()
        if name in request.query_params
        and not getattr(field, "allow_blank", False)
        and all(value == "" for value in request.query_params.getlist(name))
    }
    if blank:
        raise ValidationError(blank)
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


def documented(field: Field, schema: dict[str, Any]) -> Field:
    """`field`, with the OpenAPI schema of what it really accepts when its validation is narrower than its type
    (an enum of one value kept for the SDK's sake, a minimum length): the schema and the behaviour agree."""
    # A subclass, not an attribute on the instance: serializers deep-copy their fields, re-creating them from their
    # class and arguments.
    field.__class__ = extend_schema_field(schema)(type(type(field).__name__, (type(field),), {}))
    return field


class StrictBooleanField(serializers.BooleanField):
    """A JSON body's boolean: `true` or `false` only, as the schema says (DRF's field also takes 0, 1, "yes"…).

    Query parameters keep DRF's field: there `true`/`false` arrive as text."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """A JSON body's string: a number is refused, as `type: string` says (DRF's field turns 0 into "0")."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ListOrCommaField(serializers.ListField):
    """A list given as repeated keys (`type=a&type=b`) or comma-separated (`type=a,b`)."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for item in data for part in str(item).split(",") if part.strip()]
        return super().to_internal_value(items)


def direction_field(default: str) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=DIRECTIONS, required=False, default=default, help_text="Sort direction.")
