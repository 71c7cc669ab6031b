"""OpenAPI generation: every response schema is wrapped in the v4 envelope, as the API really answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema


def _enveloped(schema: dict[str, Any], paginated: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "success": {"type": "boolean"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/V4Message"}},
        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/V4Message"}},
        "result": schema,
    }
    if paginated:
        properties["result_info"] = {"$ref": "#/components/schemas/V4ResultInfo"}
    return {"type": "object", "required": ["success", "errors", "messages", "result"], "properties": properties}


class EnvelopeAutoSchema(AutoSchema):
    def _get_response_for_code(
        self, serializer: Any, status_code: Any, media_types: Any = None, direction: str = "response"
    ) -> dict[str, Any]:
        response = super()._get_response_for_code(serializer, status_code, media_types, direction)
        paginated = self._is_list_view(serializer) and self._get_paginator() is not None
        for content in response.get("content", {}).values():
            if "schema" in content:
                content["schema"] = _enveloped(content["schema"], paginated)
        return response


def postprocess_add_envelope_components(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["V4Message"] = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "source": {"type": "object", "properties": {"pointer": {"type": "string"}}},
        },
    }
    schemas["V4ResultInfo"] = {
        "type": "object",
        "properties": {
            name: {"type": "integer"} for name in ["page", "per_page", "count", "total_count", "total_pages"]
        },
    }
    return result
