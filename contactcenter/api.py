"""API plumbing shared by every app: the error format (the tenant-scoped base viewset is tenants/drf.py)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(detail, list):
        out = []
        for item in detail:
            out += _flatten(item, prefix)
        return out
    return [{"field": prefix or None, "message": str(detail), "code": getattr(detail, "code", "invalid")}]


AUTH_HINT = (
    "Sign in, or send an API key as the header 'Authorization: Api-Key <key>' "
    "(an admin creates keys at /api/v1/tenants/<tenant_slug>/api-keys/)."
)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every API error is JSON: {"error": {"code", "message", "fields": [{field, message, code}]}}."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found: no such object, or it belongs to another tenant.")
    elif isinstance(exc, PermissionDenied):
        # Keep the service's sentence ("Only an owner can remove an owner."); fall back to DRF's default.
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    fields = _flatten(response.data) if isinstance(exc, exceptions.ValidationError) else []
    if isinstance(exc, exceptions.ValidationError):
        message = "The request was not valid: " + "; ".join(
            f"{f['field']}: {f['message']}" if f["field"] and f["field"] != "non_field_errors" else f["message"]
            for f in fields
        )
        code = "invalid"
    else:
        detail = getattr(exc, "detail", str(exc))
        message = str(detail)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed) and (
            "Authorization" not in message
        ):
            message += f" {AUTH_HINT}"
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response


__all__ = ["exception_handler"]
