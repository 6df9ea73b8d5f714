"""Error pages: JSON under /api/ (same shape as the API's own errors), friendly HTML elsewhere."""

from django.http import JsonResponse
from django.shortcuts import render


def _api(request) -> bool:
    return request.path.startswith("/api/")


def _json(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": []}}, status=status)


def not_found(request, exception=None):
    if _api(request):
        return _json(
            404, "not_found", "Not found: no such URL or object, or it belongs to another tenant. See /api/docs/."
        )
    return render(request, "404.html", status=404)


def forbidden(request, exception=None):
    if _api(request):
        return _json(403, "permission_denied", str(exception) or "Your role may not do this.")
    return render(request, "403.html", {"reason": str(exception) if exception else ""}, status=403)


def server_error(request):
    if _api(request):
        return _json(500, "server_error", "Something went wrong on our side; it has been logged. Try again shortly.")
    return render(request, "500.html", status=500)
