"""API-key authentication: ``Authorization: Api-Key sb_xxxxxxxx_...``. A key acts for one tenant."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from tenants.services import api_key_authenticate


class ApiKeyPrincipal:
    """Stands in for request.user when a request is made with an API key."""

    is_authenticated = True
    is_anonymous = False
    is_superuser = False
    is_staff = False
    pk = id = None

    def __init__(self, api_key):
        self.api_key = api_key
        self.email = f"api-key:{api_key.prefix}"

    def __str__(self) -> str:
        return f"API key {self.api_key.name} ({self.api_key.prefix})"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0] not in (self.keyword, "Bearer"):
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Authorization: Api-Key <key>'.")
        api_key = api_key_authenticate(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed("That API key is not valid or was revoked.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request):
        return self.keyword
