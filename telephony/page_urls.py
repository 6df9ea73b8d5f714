"""Dashboard pages of the telephony app, under a business (/t/<tenant_slug>/...).

Mounted in contactcenter/urls.py with ``path("", include("telephony.page_urls"))``."""

from django.urls import path

from telephony import pages

urlpatterns = [
    path("t/<slug:tenant_slug>/phone/", pages.phone_simulator, name="tenant-phone-simulator"),
    path("t/<slug:tenant_slug>/phone/relay/", pages.phone_relay, name="tenant-phone-relay"),
]
