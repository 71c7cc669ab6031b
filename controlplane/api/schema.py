"""OpenAPI generation: every response schema is wrapped in the v4 envelope, as the API really answers."""

from __future__ import annotations

import inspect
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

ERROR_DESCRIPTIONS = {
    400: "Invalid request: one error per invalid field, each naming it in `source.pointer`.",
    401: "No credentials, or an invalid, expired or revoked API token.",
    403: "The caller's role or token does not grant this.",
    404: "No such object in an account the caller belongs to (another tenant's objects look missing too).",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error responses of an operation, for `@extend_schema(responses={200: …, **errors(401, 404)})`."""
    return {code: OpenApiResponse(description=ERROR_DESCRIPTIONS[code]) for code in codes}


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
    """Envelopes every response, answers creates and deletes 200 (never 201/204, which the SDK cannot parse), and
    documents the errors every endpoint can give even when its view does not list them."""

    def _is_create_operation(self) -> bool:
        return False

    def get_description(self) -> str:
        # Only the handler's own docstring: class docstrings are written for developers of the view.
        handler = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        return inspect.getdoc(handler) or "" if handler is not None else ""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        serializers = self.get_response_serializers()
        if self.method == "DELETE" and not isinstance(serializers, dict):
            responses = {"200": self._get_response_for_code(serializers, "200", direction=direction)}
        else:
            responses = super()._get_response_bodies(direction)
        for code in self._expected_errors():
            responses.setdefault(str(code), self._get_response_for_code(None, str(code), direction=direction))
        return responses

    def _expected_errors(self) -> list[int]:
        from controlplane.api.base import OrgScopedMixin
        from controlplane.api.permissions import IsAuthenticatedPrincipal

        codes = []
        if self.method != "GET" or self._is_list_view():
            codes.append(400)
        if any(isinstance(permission, IsAuthenticatedPrincipal) for permission in self.view.get_permissions()):
            codes.append(401)
        if isinstance(self.view, OrgScopedMixin):
            codes += [403, 404]
        elif "{" in self.path:
            codes.append(404)
        return codes

    def _get_response_for_code(
        self, serializer: Any, status_code: Any, media_types: Any = None, direction: str = "response"
    ) -> dict[str, Any]:
        if str(status_code).isdigit() and int(status_code) >= 400:
            description = serializer.description if isinstance(serializer, OpenApiResponse) else ""
            return {
                "description": description or ERROR_DESCRIPTIONS.get(int(status_code), "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V4Error"}}},
            }
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
    schemas["V4Error"] = {
        "type": "object",
        "required": ["success", "errors", "messages", "result"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/V4Message"}},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/V4Message"}},
            "result": {"type": "object", "nullable": True},
        },
    }
    schemas["V4ResultInfo"] = {
        "type": "object",
        "properties": {
            name: {"type": "integer"} for name in ["page", "per_page", "count", "total_count", "total_pages"]
        },
    }
    return result


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "An API token: `Authorization: Bearer <token>`."}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.SessionOtpAuthentication"
    name = "sessionAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "The web UI's session (writes need the `X-CSRFToken` header). API tokens cannot manage "
            "tokens, so token management uses this.",
        }
