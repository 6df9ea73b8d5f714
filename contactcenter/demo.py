"""Demo data for `make run` (dev settings only): two businesses and an agency that covers both."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from tenants.models import Agency, AgencyMembership, AgencyRole, Coverage, CoverageMode, Membership, Role, Tenant, User

DEMO_PASSWORD = "demo12345"


def demo_logins() -> list[tuple[str, str]]:
    return [
        ("owner@demo.test", "owner of Bright Smile Dental (admin: /admin/); its line: +15555550100"),
        ("agent@demo.test", "agent at Bright Smile Dental"),
        ("owner2@demo.test", "owner of Northside Plumbing"),
        ("agency@demo.test", "agent at Nightline Answering (covers both after hours)"),
        ("admin@demo.test", "platform superuser"),
    ]


def _user(email: str, name: str, **extra) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=DEMO_PASSWORD, full_name=name, **extra)
        from allauth.account.models import EmailAddress

        EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


@transaction.atomic
def load_demo() -> bool:
    """Create the demo data once. Returns False when it was already there."""
    if not settings.SWITCHBOARD_DEMO_DATA:
        raise RuntimeError("Demo data exists only with dev settings (SWITCHBOARD_DEMO_DATA).")
    if Tenant.objects.filter(slug="bright-smile-dental").exists():
        return False
    owner = _user("owner@demo.test", "Dana Owner")
    agent = _user("agent@demo.test", "Alex Agent")
    owner2 = _user("owner2@demo.test", "Nick Northside")
    agency_agent = _user("agency@demo.test", "Night Agent")
    _user("admin@demo.test", "Platform Admin", is_staff=True, is_superuser=True)

    dental = Tenant.objects.create(
        name="Bright Smile Dental",
        slug="bright-smile-dental",
        timezone="America/New_York",
        status="active",
        greeting="Bright Smile Dental, this is {agent}. How can I help?",
        agent_notes="Dental emergencies (swelling, knocked-out tooth, severe pain) go to Dr. Patel's cell: +1 555 010 0199.",
    )
    plumbing = Tenant.objects.create(
        name="Northside Plumbing",
        slug="northside-plumbing",
        timezone="America/Chicago",
        status="trial",
        greeting="Northside Plumbing, {agent} speaking.",
        agent_notes="Burst pipes and no-water calls are emergencies: take address and page the on-call tech.",
    )
    Membership.objects.create(user=owner, tenant=dental, role=Role.OWNER)
    Membership.objects.create(user=agent, tenant=dental, role=Role.AGENT)
    Membership.objects.create(user=owner2, tenant=plumbing, role=Role.OWNER)
    agency = Agency.objects.create(name="Nightline Answering", slug="nightline-answering", invite_code="NIGHTLINE-DEMO")
    AgencyMembership.objects.create(user=agency_agent, agency=agency, role=AgencyRole.AGENT)
    for tenant, grantor in ((dental, owner), (plumbing, owner2)):
        Coverage.objects.create(agency=agency, tenant=tenant, mode=CoverageMode.AFTER_HOURS, granted_by=grantor)
    from flows.demo import load_flows_demo
    from telephony.demo import load_numbers_demo

    load_flows_demo(dental=dental, plumbing=plumbing)
    load_numbers_demo(dental=dental, plumbing=plumbing)
    from agents.demo import load_agents_demo

    load_agents_demo()
    return True
