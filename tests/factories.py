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


# --- flows --------------------------------------------------------------------------------------
from flows.models import (  # noqa: E402
    BusinessHours,
    Closure,
    EscalationPolicy,
    Faq,
    Flow,
    FlowVersion,
    Holiday,
    Intent,
    Queue,
    Step,
)

TINY_FLOW_STEPS = [
    ("greeting", "say", {"text": "Hello, thanks for calling.", "next": "menu"}),
    (
        "menu",
        "menu",
        {"prompt": "How can I help?", "routes": {"hours": "bye"}, "answer_faqs": True, "escalate_to": "to_person"},
    ),
    ("to_person", "escalate", {"queue": "front-desk", "text": "Let me get someone."}),
    ("bye", "end", {"text": "Goodbye."}),
]


def make_flow(tenant, name="Main line", *, with_queue=True) -> Flow:
    """A small valid flow: greeting, a menu with one intent and one FAQ, an escalation, an end."""
    if with_queue:
        Queue.objects.get_or_create(tenant=tenant, name="front-desk")
    flow = Flow.objects.create(tenant=tenant, name=name, start_step="greeting")
    for n, (key, kind, config) in enumerate(TINY_FLOW_STEPS):
        Step.objects.create(tenant=tenant, flow=flow, key=key, kind=kind, config=config, position=n * 10)
    Intent.objects.create(
        tenant=tenant,
        flow=flow,
        name="hours",
        examples="what are your hours\nwhen are you open\nare you open today\nwhat time do you close\n"
        "opening hours please\nhow late are you open",
    )
    Faq.objects.create(
        tenant=tenant,
        flow=flow,
        key="parking",
        questions="is there parking\nwhere do I park\ncan I park nearby\nis parking free",
        answer="Free parking is behind the building.",
    )
    return flow


def _flow_version(tenant):
    from flows.services import flow_publish

    return flow_publish(flow=make_flow(tenant, name=f"Versioned {Flow.objects.count()}"), user=None)


FACTORIES.update(
    {
        Queue: lambda tenant: Queue.objects.create(tenant=tenant, name=f"queue-{Queue.objects.count()}"),
        Flow: lambda tenant: make_flow(tenant, name=f"Flow {Flow.objects.count()}"),
        Step: lambda tenant: make_flow(tenant, name=f"Flow {Flow.objects.count()}").steps.first(),
        FlowVersion: _flow_version,
        BusinessHours: lambda tenant: BusinessHours.objects.get_or_create(
            tenant=tenant, defaults={"weekly": {"mon": [["09:00", "17:00"]]}}
        )[0],
        Holiday: lambda tenant: Holiday.objects.create(
            tenant=tenant, date=f"2030-12-{10 + Holiday.objects.count():02d}"
        ),
        Closure: lambda tenant: Closure.objects.create(
            tenant=tenant, start="2030-01-01T10:00:00Z", end="2030-01-01T12:00:00Z", reason="Training"
        ),
        EscalationPolicy: lambda tenant: EscalationPolicy.objects.get_or_create(tenant=tenant)[0],
    }
)


# --- conversations and telephony -------------------------------------------------------------------
from django.utils import timezone as _tz  # noqa: E402

from conversations.models import (  # noqa: E402
    AppointmentRequest,
    Callback,
    CallbackPolicy,
    Conversation,
    Lead,
    Voicemail,
)
from telephony.models import PhoneNumber  # noqa: E402


def make_conversation(tenant, **extra) -> Conversation:
    return Conversation.objects.create(tenant=tenant, caller_number="+15555550111", started_at=_tz.now(), **extra)


_numbers = iter(range(100, 10_000))


def make_phone_number(tenant, flow=None, **extra) -> PhoneNumber:
    flow = flow or make_flow(tenant, name=f"Flow {Flow.objects.count()}")
    number = extra.pop("number", None) or f"+1555555{next(_numbers):04d}"
    return PhoneNumber.objects.create(tenant=tenant, number=number, flow=flow, **extra)


FACTORIES.update(
    {
        Conversation: make_conversation,
        Lead: lambda tenant: Lead.objects.create(tenant=tenant, conversation=make_conversation(tenant), name="Pat Lee"),
        AppointmentRequest: lambda tenant: AppointmentRequest.objects.create(
            tenant=tenant, conversation=make_conversation(tenant), service="Cleaning"
        ),
        Voicemail: lambda tenant: Voicemail.objects.create(
            tenant=tenant,
            conversation=make_conversation(tenant),
            recording_url="https://example.test/r.mp3",
            recording_uuid=f"rec-{Voicemail.objects.count()}-{tenant.pk}",
        ),
        PhoneNumber: make_phone_number,
    }
)


def make_callback(tenant, **extra) -> Callback:
    now = extra.pop("now", None) or _tz.now()
    due = extra.pop("due_at", now)
    return Callback.objects.create(
        tenant=tenant,
        conversation=extra.pop("conversation", None) or make_conversation(tenant),
        phone=extra.pop("phone", "+15555550111"),
        due_at=due,
        first_due_at=extra.pop("first_due_at", due),
        place_since=extra.pop("place_since", now),
        created_at=now,
        **extra,
    )


FACTORIES[Callback] = make_callback
FACTORIES[CallbackPolicy] = lambda tenant: CallbackPolicy.objects.create(tenant=tenant)


# --- agents -------------------------------------------------------------------------------------
# Guarded until "agents" is in INSTALLED_APPS, so this module stays importable without it.
from django.apps import apps as _apps  # noqa: E402

if _apps.is_installed("agents"):
    from agents.models import Escalation

    def make_escalation(tenant, **extra) -> Escalation:
        queue, _ = Queue.objects.get_or_create(tenant=tenant, name=extra.pop("queue_name", "front-desk"))
        return Escalation.objects.create(
            tenant=tenant,
            conversation=extra.pop("conversation", None) or make_conversation(tenant),
            queue=extra.pop("queue", None) or queue,
            reason_code=extra.pop("reason_code", "asked_for_human"),
            reason_text=extra.pop("reason_text", "The caller asked for a person."),
            **extra,
        )

    FACTORIES[Escalation] = make_escalation


# --- web chat (agents.chat_admin) ------------------------------------------------------------------
if _apps.is_installed("agents"):
    from agents.models import ChatSite

    def make_chat_site(tenant, **extra) -> ChatSite:
        flow = extra.pop("flow", None) or make_flow(tenant, name=f"Chat flow {Flow.objects.count()}")
        return ChatSite.objects.create(
            tenant=tenant,
            flow=flow,
            title=extra.pop("title", "Chat with us"),
            allowed_origins=extra.pop("allowed_origins", "https://www.example.test"),
            **extra,
        )

    FACTORIES[ChatSite] = make_chat_site
