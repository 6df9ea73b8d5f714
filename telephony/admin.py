from django.contrib import admin

from telephony.models import PhoneNumber
from tenants.admin_site import TenantModelAdmin


@admin.register(PhoneNumber)
class PhoneNumberAdmin(TenantModelAdmin):
    list_display = ("number", "label", "flow", "active", "fallback_number")
    list_filter = ("active",)
    search_fields = ("number", "label")
    fields = ("number", "label", "flow", "active", "fallback_number", "transcribe_voicemail")
