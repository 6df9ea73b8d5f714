"""allauth adapter: a signup creates the user, the business and the owner membership together."""
from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from tenants.services import tenant_create


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=False)
            user.full_name = form.cleaned_data.get("full_name", "") or ""
            user.save()
            business = form.cleaned_data.get("business_name")
            if business:
                tenant_create(name=business, timezone_name=form.cleaned_data["timezone"], owner=user)
        return user
