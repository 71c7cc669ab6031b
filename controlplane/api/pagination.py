"""page/per_page pagination that fills v4 `result_info`. A page past the end is an empty list, not a 404,
because the official SDK iterates until it gets an empty page."""

from __future__ import annotations

import math
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response


def _number(request: Any, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(float(raw))  # the SDK sends page=2.0
    except (TypeError, ValueError, OverflowError):
        raise ValidationError({name: f"must be a whole number, not “{raw}”."}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError({name: f"must be {bound}."})
    return value


class V4Pagination(BasePagination):
    default_per_page = 20
    max_per_page = 1000

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list[Any]:
        self.page = _number(request, "page", 1, minimum=1)
        self.per_page = _number(request, "per_page", self.default_per_page, minimum=1, maximum=self.max_per_page)
        self.total_count = (
            queryset.count() if hasattr(queryset, "count") and not isinstance(queryset, list) else len(queryset)
        )
        start = (self.page - 1) * self.per_page
        if start >= self.total_count:
            return []  # past the end (the SDK's last request), and never an OFFSET too large for the database
        return list(queryset[start : start + self.per_page])

    def get_paginated_response(self, data: Any) -> Response:
        response = Response(data)
        response.result_info = {
            "page": self.page,
            "per_page": self.per_page,
            "count": len(data),
            "total_count": self.total_count,
            "total_pages": max(1, math.ceil(self.total_count / self.per_page)) if self.total_count else 0,
        }
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "page",
                "required": False,
                "in": "query",
                "description": "Page number (from 1).",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "per_page",
                "required": False,
                "in": "query",
                "description": "Items per page (1–1000).",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        ]


def paginated_response(request: Any, items: Any, serializer_class: Any, *, view: Any = None) -> Response:
    """One page of `items` (a queryset or a list), serialized, with its v4 `result_info`."""
    paginator = V4Pagination()
    page = paginator.paginate_queryset(items, request, view=view)
    context = {"request": request, "view": view}
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context).data)
