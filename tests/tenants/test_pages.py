"""Business and agency pages: each role sees what it should, writes go through the services with
polite feedback, and nobody reaches another tenant's or agency's pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.urls import URLPattern, get_resolver, reverse
from django.utils import timezone

from tenants.models import (
    AgencyMembership,
    AgencyRole,
    ApiKey,
    AuditEvent,
    Coverage,
    Invitation,
    Membership,
    Role,
)
from tenants.scoping import unscoped
from tests.factories import AgencyMembershipFactory, MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def adam(tenant_a):
    return MembershipFactory(tenant=tenant_a, role=Role.ADMIN, user__email="adam@example.test").user


@pytest.fixture
def olga(agency):
    """Owner of the Night Desk agency."""
    return AgencyMembershipFactory(agency=agency, role=AgencyRole.OWNER, user__email="olga@example.test").user


def text(response) -> str:
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def accept_path(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/invitations/[^/\s]+/)", body)
    assert match, body
    return match.group(1)


# --- /app/ ------------------------------------------------------------------------------------------------------


def test_app_home_redirects_to_the_only_business(client_for, alice):
    response = client_for(alice).get("/app/")
    assert response.status_code == 302
    assert response["Location"] == "/t/alpha-dental/"


def test_app_home_lists_several_businesses(client_for, alice, tenant_b):
    Membership.objects.create(user=alice, tenant=tenant_b, role=Role.AGENT)
    response = client_for(alice).get("/app/")
    assert response.status_code == 200
    assert "Alpha Dental" in text(response) and "Beta Plumbing" in text(response)
    assert "/t/beta-plumbing/" in text(response)


def test_app_home_without_a_business_is_friendly(client_for, db):
    loner = UserFactory(email="loner@example.test")
    response = client_for(loner).get("/app/")
    assert response.status_code == 200
    assert "not part of a business yet" in text(response)
    assert "loner@example.test" in text(response)


def test_app_home_sends_agency_staff_without_businesses_to_their_agency(client_for, agency, olga):
    Coverage.objects.all().delete()
    response = client_for(olga).get("/app/")
    assert response["Location"] == "/agency/night-desk/"


def test_app_home_shows_invitations_waiting(client_for, alice, tenant_a, db):
    from tenants.services import invitation_create

    loner = UserFactory(email="loner@example.test")
    invitation_create(email="loner@example.test", role=Role.AGENT, invited_by=alice, tenant=tenant_a)
    response = client_for(loner).get("/app/")
    assert "Invitations waiting for you" in text(response)
    assert "Alpha Dental" in text(response)


def test_anonymous_is_sent_to_login(client, tenant_a):
    for url in ("/app/", "/t/alpha-dental/", "/t/alpha-dental/team/", "/agency/night-desk/", "/agencies/new/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


# --- tenant home ------------------------------------------------------------------------------------------------


def test_owner_home_is_an_onboarding_checklist(client_for, alice):
    client = client_for(alice)
    response = client.get("/t/alpha-dental/")
    assert response.status_code == 200
    html = text(response)
    assert "Alpha Dental" in html and "America/New_York" in html and "Trial" in html and "Owner" in html
    for title in (
        "Verify your email address",
        "Invite your teammates",
        "Review and publish your script",
        "Connect a phone number",
        "answering service",
        "Create an API key",
    ):
        assert title in html
    steps = {s["key"]: s for s in response.context["checklist"]}
    assert steps["verify"]["done"] and not steps["team"]["done"]
    assert not steps["phone"]["done"] and steps["phone"]["url"] == "/admin/telephony/phonenumber/add/"
    assert client.get(steps["phone"]["url"]).status_code == 200


def test_checklist_ticks_off_steps(client_for, alice, bob, coverage_a, tenant_a):
    from tests.factories import make_api_key

    make_api_key(tenant_a)
    steps = {s["key"]: s for s in client_for(alice).get("/t/alpha-dental/").context["checklist"]}
    assert steps["team"]["done"] and steps["coverage"]["done"] and steps["api"]["done"]


def test_agent_home_is_a_summary(client_for, bob):
    response = client_for(bob).get("/t/alpha-dental/")
    assert response.status_code == 200
    assert "checklist" not in response.context
    assert "Get set up" not in text(response)
    assert "Agent" in text(response)


def test_agency_agent_home_is_a_summary(client_for, nina):
    response = client_for(nina).get("/t/alpha-dental/")
    assert response.status_code == 200
    assert "through your answering service" in text(response)
    assert "Get set up" not in text(response)


# --- team and invitations ---------------------------------------------------------------------------------------


def test_team_page_for_each_role(client_for, alice, bob, sam, nina):
    owner_view = client_for(alice).get("/t/alpha-dental/team/")
    assert owner_view.status_code == 200
    for email in ("alice@example.test", "bob@example.test", "sam@example.test"):
        assert email in text(owner_view)
    assert "Invite a teammate" in text(owner_view)
    for member in (bob, sam):
        response = client_for(member).get("/t/alpha-dental/team/")
        assert response.status_code == 200
        assert "alice@example.test" in text(response)
        assert "Invite a teammate" not in text(response)
        assert "Change role" not in text(response)
    # An answering service's agent is not the business's staff.
    assert client_for(nina).get("/t/alpha-dental/team/").status_code == 403


def test_invite_sends_an_email_whose_link_works_for_the_invited_address_only(
    client_for, alice, bob, tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(
            "/t/alpha-dental/team/", {"email": "New.Person@Example.test", "role": "agent"}
        )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.test"]
    assert "Alpha Dental" in mail.outbox[0].subject
    path = accept_path(mail.outbox[0].body)
    team = client_for(alice).get("/t/alpha-dental/team/")
    assert "new.person@example.test" in text(team)
    assert path not in text(team)  # the secret link is only in the email

    # Someone else, logged in: told whose invitation it is; accepting fails politely.
    page = client_for(bob).get(path)
    assert page.status_code == 200
    assert "was sent to <strong>new.person@example.test</strong>" in text(page)
    response = client_for(bob).post(path, follow=True)
    assert "Sign in with the invited address" in " ".join(messages_of(response))
    assert Invitation.objects.get(email="new.person@example.test").accepted_at is None

    # Signed out: asked to log in or sign up.
    from django.test import Client

    anonymous = Client()
    page = anonymous.get(path)
    assert "Create your account" in text(page) and "I already have an account" in text(page)
    assert alice.get_full_name() in text(page)

    # The invited person.
    invitee = UserFactory(email="new.person@example.test")
    client = client_for(invitee)
    page = client.get(path)
    assert "Accept and join Alpha Dental" in text(page)
    response = client.post(path)
    assert response.status_code == 302
    assert response["Location"] == "/t/alpha-dental/"
    assert Membership.objects.get(user=invitee, tenant=tenant_a).role == Role.AGENT
    assert client.get("/t/alpha-dental/").status_code == 200
    # Used now.
    again = client_for(bob).get(path)
    assert "already been accepted" in text(again)


def test_invite_errors_are_shown_with_the_input_kept(client_for, alice, bob, adam):
    response = client_for(alice).post("/t/alpha-dental/team/", {"email": "not-an-email", "role": "agent"})
    assert response.status_code == 200
    assert "Enter a valid email address." in text(response)
    assert 'value="not-an-email"' in text(response)
    response = client_for(alice).post("/t/alpha-dental/team/", {"email": "bob@example.test", "role": "agent"})
    assert "bob@example.test is already a member of Alpha Dental." in text(response)
    # Admins cannot invite owners: the option is not offered, and a forged one is refused.
    page = client_for(adam).get("/t/alpha-dental/team/")
    assert 'value="owner"' not in str(page.context["invite_form"]["role"])
    response = client_for(adam).post("/t/alpha-dental/team/", {"email": "boss@example.test", "role": "owner"})
    assert response.status_code == 200
    assert response.context["invite_form"].errors["role"]
    assert not Invitation.objects.filter(email="boss@example.test").exists()


def test_revoked_and_expired_invitations_explain_themselves(client_for, alice, tenant_a, client):
    from tenants.services import invitation_create

    invitation = invitation_create(email="late@example.test", role=Role.AGENT, invited_by=alice, tenant=tenant_a)
    response = client_for(alice).post(reverse("tenant-invitation-revoke", args=["alpha-dental", invitation.pk]))
    assert response.status_code == 302
    assert "withdrawn" in text(client.get(f"/invitations/{invitation.token}/"))

    expired = invitation_create(email="slow@example.test", role=Role.AGENT, invited_by=alice, tenant=tenant_a)
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    page = client.get(f"/invitations/{expired.token}/")
    assert "This invitation expired" in text(page)
    slow = UserFactory(email="slow@example.test")
    response = client_for(slow).post(f"/invitations/{expired.token}/", follow=True)
    assert "expired or was already used" in " ".join(messages_of(response))
    assert not Membership.objects.filter(user=slow).exists()

    missing = client.get("/invitations/no-such-token/")
    assert missing.status_code == 404
    assert "can't find this invitation" in text(missing)


def test_change_role_and_remove_members(client_for, alice, bob, tenant_a):
    bob_membership = Membership.objects.get(user=bob, tenant=tenant_a)
    alice_membership = Membership.objects.get(user=alice, tenant=tenant_a)
    client = client_for(alice)

    response = client.post(
        reverse("tenant-member-role", args=["alpha-dental", bob_membership.pk]), {"role": "supervisor"}, follow=True
    )
    assert "bob@example.test is now supervisor." in messages_of(response)
    bob_membership.refresh_from_db()
    assert bob_membership.role == Role.SUPERVISOR

    # The last owner can neither step down nor leave.
    response = client.post(
        reverse("tenant-member-role", args=["alpha-dental", alice_membership.pk]), {"role": "admin"}, follow=True
    )
    assert "A business needs at least one owner. Make someone else an owner first." in messages_of(response)
    response = client.post(reverse("tenant-member-remove", args=["alpha-dental", alice_membership.pk]), follow=True)
    assert "A business needs at least one owner. Make someone else an owner first." in messages_of(response)
    assert Membership.objects.filter(pk=alice_membership.pk, role=Role.OWNER).exists()

    response = client.post(reverse("tenant-member-remove", args=["alpha-dental", bob_membership.pk]), follow=True)
    assert "bob@example.test was removed from Alpha Dental." in messages_of(response)
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    assert client_for(bob).get("/t/alpha-dental/").status_code == 404
    with unscoped("test"):
        actions = list(AuditEvent.objects.filter(tenant=tenant_a).values_list("action", flat=True))
    assert "membership.role_changed" in actions and "membership.removed" in actions


def test_admin_cannot_touch_an_owner(client_for, alice, adam, tenant_a):
    alice_membership = Membership.objects.get(user=alice, tenant=tenant_a)
    client = client_for(adam)
    response = client.post(
        reverse("tenant-member-role", args=["alpha-dental", alice_membership.pk]), {"role": "agent"}, follow=True
    )
    assert "Only an owner can change an owner's role or make someone an owner." in messages_of(response)
    response = client.post(reverse("tenant-member-remove", args=["alpha-dental", alice_membership.pk]), follow=True)
    assert "Only an owner can remove an owner." in messages_of(response)
    alice_membership.refresh_from_db()
    assert alice_membership.role == Role.OWNER


# --- coverage ---------------------------------------------------------------------------------------------------


def test_owner_grants_coverage_by_code_and_revokes_it(client_for, alice, adam, agency, db):
    nina = AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT, user__email="nina@example.test").user
    client = client_for(alice)
    assert "Night Desk" not in text(client.get("/t/alpha-dental/coverage/"))

    response = client.post("/t/alpha-dental/coverage/", {"invite_code": "WRONG", "mode": "always"})
    assert response.status_code == 200
    assert "No agency has that invite code" in text(response)
    assert 'value="WRONG"' in text(response)

    response = client.post(
        "/t/alpha-dental/coverage/", {"invite_code": f"  {agency.invite_code} ", "mode": "overflow"}, follow=True
    )
    assert "Night Desk now answers for Alpha Dental (overflow)." in messages_of(response)
    covered = Coverage.objects.get(agency=agency)
    assert covered.active and covered.mode == "overflow" and covered.granted_by == alice

    nina_client = client_for(nina)
    assert nina_client.get("/t/alpha-dental/").status_code == 200

    # Admins see who covers the business but cannot change it.
    admin_view = client_for(adam).get("/t/alpha-dental/coverage/")
    assert admin_view.status_code == 200 and "Night Desk" in text(admin_view)
    assert "Give access" not in text(admin_view)
    assert (
        client_for(adam)
        .post("/t/alpha-dental/coverage/", {"invite_code": agency.invite_code, "mode": "always"})
        .status_code
        == 403
    )
    assert (
        client_for(adam).post(reverse("tenant-coverage-revoke", args=["alpha-dental", covered.pk])).status_code == 403
    )

    response = client.post(reverse("tenant-coverage-revoke", args=["alpha-dental", covered.pk]), follow=True)
    assert "Night Desk no longer answers for Alpha Dental. Their access ended now." in messages_of(response)
    covered.refresh_from_db()
    assert not covered.active and covered.revoked_at
    assert nina_client.get("/t/alpha-dental/").status_code == 404  # the very next request
    with unscoped("test"):
        events = AuditEvent.objects.filter(action="coverage.revoked").select_related("actor")
        assert [e.actor for e in events] == [alice]


# --- API keys ---------------------------------------------------------------------------------------------------


def test_api_key_is_shown_once_then_only_its_prefix(client_for, alice, tenant_a):
    client = client_for(alice)
    response = client.post("/t/alpha-dental/api-keys/", {"name": "Booking system", "access": "write"})
    assert response.status_code == 200
    raw = response.context["raw_key"]
    assert raw.startswith("sb_") and raw in text(response)
    assert "only time we show it" in text(response)
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(tenant=tenant_a, name="Booking system")
    assert key.access == "write" and key.created_by == alice

    listing = client.get("/t/alpha-dental/api-keys/")
    assert raw not in text(listing)
    assert key.prefix in text(listing) and "Booking system" in text(listing) and "Read and write" in text(listing)
    assert "Never" in text(listing)

    response = client.post("/t/alpha-dental/api-keys/", {"name": " ", "access": "read"})
    assert "Give the key a name" in text(response)

    response = client.post(reverse("tenant-api-key-revoke", args=["alpha-dental", key.pk]), follow=True)
    assert any("was revoked" in m for m in messages_of(response))
    key.refresh_from_db()
    assert key.revoked_at is not None


# --- audit ------------------------------------------------------------------------------------------------------


def test_audit_log_shows_this_business_only(client_for, alice, adam, bob, tenant_a, tenant_b):
    AuditEvent.objects.create(tenant=tenant_a, actor=alice, action="test.mine", detail="alpha detail")
    AuditEvent.objects.create(tenant=tenant_b, action="test.theirs", detail="beta detail")
    for user in (alice, adam):
        response = client_for(user).get("/t/alpha-dental/audit/")
        assert response.status_code == 200
        assert "alpha detail" in text(response)
        assert "beta detail" not in text(response)
    assert client_for(bob).get("/t/alpha-dental/audit/").status_code == 403


# --- isolation: another tenant, lower roles ---------------------------------------------------------------------


@pytest.fixture
def a_rows(alice, bob, tenant_a, coverage_a):
    from tests.factories import make_api_key

    invitation = Invitation.objects.create(email="pending@example.test", tenant=tenant_a, role=Role.AGENT)
    key, _ = make_api_key(tenant_a)
    return {
        "membership": Membership.objects.get(user=bob, tenant=tenant_a).pk,
        "invitation": invitation.pk,
        "coverage": coverage_a.pk,
        "api_key": key.pk,
    }


def tenant_a_urls(rows) -> list[tuple[str, str]]:
    """(method, url) for every tenant A page and action."""
    slug = "alpha-dental"
    return [
        ("get", reverse("tenant-home", args=[slug])),
        ("get", reverse("tenant-team", args=[slug])),
        ("post", reverse("tenant-team", args=[slug])),
        ("post", reverse("tenant-member-role", args=[slug, rows["membership"]])),
        ("post", reverse("tenant-member-remove", args=[slug, rows["membership"]])),
        ("post", reverse("tenant-invitation-revoke", args=[slug, rows["invitation"]])),
        ("get", reverse("tenant-coverage", args=[slug])),
        ("post", reverse("tenant-coverage", args=[slug])),
        ("post", reverse("tenant-coverage-revoke", args=[slug, rows["coverage"]])),
        ("get", reverse("tenant-api-keys", args=[slug])),
        ("post", reverse("tenant-api-keys", args=[slug])),
        ("post", reverse("tenant-api-key-revoke", args=[slug, rows["api_key"]])),
        ("get", reverse("tenant-audit", args=[slug])),
    ]


def test_another_tenant_gets_404_everywhere(client_for, charlie, a_rows, agency):
    client = client_for(charlie)
    payload = {
        "email": "x@example.test",
        "role": "owner",
        "invite_code": agency.invite_code,
        "mode": "always",
        "name": "k",
        "access": "write",
    }
    for method, url in tenant_a_urls(a_rows):
        response = getattr(client, method)(url, payload if method == "post" else None)
        assert response.status_code == 404, (method, url, response.status_code)
    # And nothing changed.
    assert Membership.objects.filter(pk=a_rows["membership"]).exists()
    assert Coverage.objects.get(pk=a_rows["coverage"]).active
    assert ApiKey.objects.get(pk=a_rows["api_key"]).revoked_at is None
    assert not Invitation.objects.filter(email="x@example.test").exists()


def test_another_tenants_row_under_my_slug_is_404(client_for, charlie, tenant_b, a_rows):
    """Charlie's own slug with tenant A's primary keys."""
    client = client_for(charlie)
    for name, key in [
        ("tenant-member-role", "membership"),
        ("tenant-member-remove", "membership"),
        ("tenant-invitation-revoke", "invitation"),
        ("tenant-coverage-revoke", "coverage"),
        ("tenant-api-key-revoke", "api_key"),
    ]:
        response = client.post(reverse(name, args=["beta-plumbing", a_rows[key]]), {"role": "agent"})
        assert response.status_code == 404, name


def test_agent_gets_403_on_admin_actions(client_for, bob, a_rows, agency):
    client = client_for(bob)
    payload = {
        "email": "x@example.test",
        "role": "agent",
        "invite_code": agency.invite_code,
        "mode": "always",
        "name": "k",
        "access": "read",
    }
    readable = {reverse("tenant-home", args=["alpha-dental"]), reverse("tenant-team", args=["alpha-dental"])}
    for method, url in tenant_a_urls(a_rows):
        response = getattr(client, method)(url, payload if method == "post" else None)
        expected = 200 if (method == "get" and url in readable) else 403
        assert response.status_code == expected, (method, url, response.status_code)
    assert not Invitation.objects.filter(email="x@example.test").exists()
    assert ApiKey.objects.filter(name="k").count() == 0


def test_supervisor_reads_the_team_but_cannot_invite(client_for, sam):
    client = client_for(sam)
    assert client.get("/t/alpha-dental/team/").status_code == 200
    assert client.post("/t/alpha-dental/team/", {"email": "x@example.test", "role": "agent"}).status_code == 403
    assert client.get("/t/alpha-dental/api-keys/").status_code == 403


def test_every_route_with_extra_kwargs_names_its_model():
    from tenants import urls

    for pattern in urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        kwargs = set(pattern.pattern.converters) - {"tenant_slug"}
        if kwargs:
            assert getattr(pattern.callback, "isolation_model", None) is not None, pattern.name
            assert set(pattern.callback.isolation_kwargs) == kwargs, pattern.name
        if "tenant_slug" in pattern.pattern.converters:
            assert hasattr(pattern.callback, "tenant_minimum_role"), pattern.name
    assert get_resolver().resolve("/t/x/team/").url_name == "tenant-team"


# --- agencies ---------------------------------------------------------------------------------------------------


def test_agency_page_for_members(client_for, agency, olga, nina, coverage_a):
    owner_view = client_for(olga).get("/agency/night-desk/")
    assert owner_view.status_code == 200
    html = text(owner_view)
    assert "Night Desk" in html and agency.invite_code in html
    assert "Alpha Dental" in html and "After hours" in html
    assert "nina@example.test" in html and "olga@example.test" in html
    assert "Invite an agent" in html

    agent_view = client_for(nina).get("/agency/night-desk/")
    assert agent_view.status_code == 200
    assert agency.invite_code not in text(agent_view)
    assert "Invite an agent" not in text(agent_view)
    assert client_for(nina).post("/agency/night-desk/", {"email": "x@example.test", "role": "agent"}).status_code == 403


def test_agency_pages_are_404_for_non_members(client_for, agency, alice, charlie, olga):
    invitation = Invitation.objects.create(email="p@example.test", agency=agency, role=AgencyRole.AGENT)
    for user in (alice, charlie):
        client = client_for(user)
        assert client.get("/agency/night-desk/").status_code == 404
        assert client.post("/agency/night-desk/", {"email": "x@example.test", "role": "agent"}).status_code == 404
        assert client.post(reverse("agency-invitation-revoke", args=["night-desk", invitation.pk])).status_code == 404
        assert client.get("/agency/no-such-agency/").status_code == 404
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_agency_owner_invites_an_agent_who_joins(client_for, agency, olga, django_capture_on_commit_callbacks):
    client = client_for(olga)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/agency/night-desk/", {"email": "agent7@example.test", "role": "agent"}, follow=True)
    assert "Invitation sent to agent7@example.test as agent." in messages_of(response)
    assert len(mail.outbox) == 1 and "Night Desk" in mail.outbox[0].subject
    path = accept_path(mail.outbox[0].body)
    agent = UserFactory(email="agent7@example.test")
    response = client_for(agent).post(path)
    assert response["Location"] == "/agency/night-desk/"
    assert AgencyMembership.objects.get(user=agent, agency=agency).role == AgencyRole.AGENT

    response = client.post("/agency/night-desk/", {"email": "bad", "role": "agent"})
    assert response.status_code == 200 and "Enter a valid email address." in text(response)


def test_agency_supervisor_cannot_invite_owners_and_can_withdraw(client_for, agency, olga, db):
    sup = AgencyMembershipFactory(agency=agency, role=AgencyRole.SUPERVISOR, user__email="sup@example.test").user
    client = client_for(sup)
    response = client.post("/agency/night-desk/", {"email": "boss@example.test", "role": "owner"})
    assert response.status_code == 200
    assert "Only an agency owner can invite another owner." in text(response)
    client.post("/agency/night-desk/", {"email": "later@example.test", "role": "agent"})
    invitation = Invitation.objects.get(email="later@example.test")
    response = client.post(reverse("agency-invitation-revoke", args=["night-desk", invitation.pk]), follow=True)
    assert "The invitation for later@example.test was withdrawn." in messages_of(response)


def test_create_an_agency(client_for, alice):
    client = client_for(alice)
    assert client.get("/agencies/new/").status_code == 200
    response = client.post("/agencies/new/", {"name": " "})
    assert response.status_code == 200 and "Enter your answering service" in text(response)
    response = client.post("/agencies/new/", {"name": "Owl Answering"})
    assert response.status_code == 302
    assert response["Location"] == "/agency/owl-answering/"
    assert AgencyMembership.objects.get(user=alice, agency__slug="owl-answering").role == AgencyRole.OWNER
    assert client.get("/agency/owl-answering/").status_code == 200
