"""factory_boy factories. FACTORIES maps every admin-registered model to a factory that makes one
row for a given tenant; the isolation matrix uses it, and fails for a model that has none."""
from __future__ import annotations

import factory
from allauth.account.models import EmailAddress

from tenants.models import (
    Agency,
    AgencyMembership,
    AgencyRole,
    ApiKey,
    Coverage,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)

PASSWORD = "correct-horse-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(self, create, extracted, **kwargs):
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Business {n}")
    slug = factory.Sequence(lambda n: f"business-{n}")
    timezone = "America/New_York"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.AGENT


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency

    name = factory.Sequence(lambda n: f"Agency {n}")
    slug = factory.Sequence(lambda n: f"agency-{n}")


class AgencyMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgencyMembership

    user = factory.SubFactory(UserFactory)
    agency = factory.SubFactory(AgencyFactory)
    role = AgencyRole.AGENT


class CoverageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coverage

    agency = factory.SubFactory(AgencyFactory)
    tenant = factory.SubFactory(TenantFactory)


def make_api_key(tenant: Tenant, access: str = "read") -> tuple[ApiKey, str]:
    from tenants.services import api_key_create

    return api_key_create(tenant=tenant, name="test key", access=access, created_by=None)


# --- one row per admin-registered model, owned by `tenant` (used by the isolation matrix) -------
def _membership(tenant):
    return MembershipFactory(tenant=tenant, role=Role.AGENT)


def _invitation(tenant):
    return Invitation.objects.create(email="invitee@example.test", tenant=tenant, role=Role.AGENT)


def _coverage(tenant):
    return CoverageFactory(tenant=tenant)


def _api_key(tenant):
    return make_api_key(tenant)[0]


FACTORIES: dict[type, callable] = {
    Tenant: lambda tenant: tenant,
    Membership: _membership,
    Invitation: _invitation,
    Coverage: _coverage,
    ApiKey: _api_key,
}


def register_factory(model):
    """Decorator for later apps: @register_factory(Flow) def _flow(tenant): ..."""

    def decorator(fn):
        FACTORIES[model] = fn
        return fn

    return decorator


def _audit_event(tenant):
    from tenants.models import AuditEvent

    return AuditEvent.objects.create(tenant=tenant, action="test.event", detail="made by the isolation matrix")


from tenants.models import AuditEvent  # noqa: E402

FACTORIES[AuditEvent] = _audit_event
