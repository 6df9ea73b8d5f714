"""OpenAPI pieces shared by the API: the API-key security scheme and the documented error body.

Importing this module registers the ``ApiKeyAuthentication`` scheme with drf-spectacular
(``tenants.apis`` imports it, and the URLconf imports ``tenants.apis``).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "Send the header `Authorization: Api-Key sb_...`. Create a key with "
                "`POST /api/v1/tenants/{tenant_slug}/api-keys/`; the full key is shown once. "
                "A key acts for its own tenant only: read keys act as a supervisor, write keys as an admin."
            ),
        }


class ApiErrorFieldSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True, help_text="The input field at fault (dotted for nested), or null.")
    message = serializers.CharField(help_text="What was wrong and how to fix it.")
    code = serializers.CharField(help_text="Machine-readable code, e.g. `required`, `invalid_choice`.")


class ApiErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="`invalid`, `not_authenticated`, `authentication_failed`, `permission_denied`, `not_found`, ..."
    )
    message = serializers.CharField(help_text="A sentence a person can act on.")
    fields = ApiErrorFieldSerializer(many=True, help_text="One entry per invalid field (400 only; else empty).")


class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The input was not valid; `error.fields` says which field and what to change. Nothing was changed.",
    401: "Not signed in, or the API key is missing, not valid or revoked. "
    "Send `Authorization: Api-Key <key>` or sign in.",
    403: "Your role (or the API key's access) may not do this; the message names the role needed.",
    404: "Not found: no such object, or it belongs to another tenant, or you cannot act for this tenant.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``{status: OpenApiResponse(ApiErrorSerializer)}`` for the given 4xx codes (401 always)."""
    wanted = sorted(set(codes) | {401})
    return {code: OpenApiResponse(ApiErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in wanted}
