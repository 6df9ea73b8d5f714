"""Signup end to end through the real allauth views: business + owner in one go, verification by
email, clear errors that create nothing, the signup rate limit, and signup from an invitation."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.urls import reverse

from tenants.models import Membership, Role, Tenant, User

SIGNUP_URL = "/accounts/signup/"
PASSWORD = "night-shift-Owl-42"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


def signup_data(**overrides) -> dict:
    data = {
        "full_name": "Dana Dentist",
        "email": "dana@brightsmile.test",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "business_name": "Bright Smile Dental",
        "timezone": "America/Chicago",
    }
    data.update(overrides)
    return data


def counts() -> tuple[int, int, int]:
    return User.objects.count(), Tenant.objects.count(), Membership.objects.count()


def link_in(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", body)
    assert match, body
    return match.group(1)


@pytest.mark.django_db
def test_signup_page_shows_business_fields(client):
    response = client.get(SIGNUP_URL)
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("full_name", "email", "password1", "password2", "business_name", "timezone"):
        assert f'name="{name}"' in html
    assert "Start your free trial" in html
    assert 'href="/static/css/app.css"' in html  # our layout, not allauth's bare one


@pytest.mark.django_db
def test_signup_verify_and_land_on_the_new_business(client):
    response = client.post(SIGNUP_URL, signup_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "Check your email" in client.get(response["Location"]).content.decode()

    # Not usable yet: mandatory verification.
    assert client.get("/app/").status_code == 302
    assert not client.session.get("_auth_user_id")

    user = User.objects.get(email="dana@brightsmile.test")
    assert user.full_name == "Dana Dentist"
    tenant = Tenant.objects.get(name="Bright Smile Dental")
    assert tenant.timezone == "America/Chicago"
    assert tenant.slug == "bright-smile-dental"
    assert Membership.objects.get(tenant=tenant).user == user
    assert Membership.objects.get(tenant=tenant).role == Role.OWNER

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dana@brightsmile.test"]
    assert message.subject.startswith("[Switchboard] ")
    confirm_path = link_in(message.body)

    page = client.get(confirm_path)
    assert page.status_code == 200
    assert "dana@brightsmile.test" in page.content.decode()
    assert not EmailAddress.objects.get(user=user).verified  # GET does not confirm

    response = client.post(confirm_path)
    assert response.status_code == 302
    assert response["Location"] == "/app/"
    assert EmailAddress.objects.get(user=user).verified
    assert int(client.session["_auth_user_id"]) == user.pk

    response = client.get("/app/")
    assert response.status_code == 302
    assert response["Location"] == "/t/bright-smile-dental/"
    home = client.get(response["Location"])
    assert home.status_code == 200
    html = home.content.decode()
    assert "Bright Smile Dental" in html
    assert "America/Chicago" in html
    assert "Get set up" in html  # the owner's onboarding checklist
    assert "Verify your email address" in html


@pytest.mark.django_db
def test_duplicate_email_is_a_clear_error_and_creates_nothing(client, alice):
    before = counts()
    response = client.post(SIGNUP_URL, signup_data(email="Alice@Example.test"))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "email" in errors
    assert "already uses this email" in errors["email"][0]
    assert "Log in instead" in response.content.decode()
    assert counts() == before
    assert mail.outbox == []


@pytest.mark.django_db
def test_empty_business_name_is_an_error_and_creates_nothing(client):
    before = counts()
    response = client.post(SIGNUP_URL, signup_data(business_name="   "))
    assert response.status_code == 200
    assert response.context["form"].errors["business_name"] == ["Enter your business name."]
    assert counts() == before
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"password2": "something-else-42"}, "password2", "same password"),
        ({"password1": "123", "password2": "123"}, "password1", "too short"),
        ({"password1": "password", "password2": "password"}, "password1", "too common"),
        ({"email": "not-an-email"}, "email", "valid email"),
        ({"email": ""}, "email", "required"),
        ({"full_name": ""}, "full_name", "Enter your name"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Pick your time zone"),
    ],
)
def test_bad_input_is_explained_and_kept(client, overrides, field, fragment):
    before = counts()
    response = client.post(SIGNUP_URL, signup_data(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert any(fragment.lower() in e.lower() for e in errors[field]), errors[field]
    html = response.content.decode()
    assert 'value="Bright Smile Dental"' in html  # what they typed is still there
    assert counts() == before
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_failure_while_saving_creates_nothing(client, monkeypatch):
    from django.core.exceptions import ValidationError

    def broken(**kwargs):
        raise ValidationError({"name": "That business name cannot be used."})

    monkeypatch.setattr("tenants.adapters.tenant_create", broken)
    before = counts()
    response = client.post(SIGNUP_URL, signup_data())
    assert response.status_code == 200
    assert "That business name cannot be used." in response.content.decode()
    assert counts() == before
    assert not EmailAddress.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_signup_rate_limit_refuses_the_next_signup_from_one_ip(client, settings):
    from allauth.account import app_settings as allauth_settings

    limit = allauth_settings.RATE_LIMITS["signup"]
    amount = int(limit.split("/")[0])
    for n in range(amount):
        response = client.post(
            SIGNUP_URL, signup_data(email=f"owner{n}@example.test", business_name=f"Shop {n}"), REMOTE_ADDR="10.0.0.9"
        )
        assert response.status_code == 302, n
    users = User.objects.count()
    response = client.post(
        SIGNUP_URL, signup_data(email="one-too-many@example.test", business_name="Shop X"), REMOTE_ADDR="10.0.0.9"
    )
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert User.objects.count() == users
    # Another address is not affected.
    response = client.post(
        SIGNUP_URL, signup_data(email="neighbour@example.test", business_name="Shop Y"), REMOTE_ADDR="10.0.0.10"
    )
    assert response.status_code == 302


@pytest.mark.django_db
def test_login_logout_and_password_reset_pages_are_styled(client, alice):
    for url in ("/accounts/login/", "/accounts/password/reset/"):
        response = client.get(url)
        assert response.status_code == 200
        assert 'href="/static/css/app.css"' in response.content.decode()
    response = client.post("/accounts/login/", {"login": "alice@example.test", "password": "wrong-password"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()
    response = client.post("/accounts/login/", {"login": "alice@example.test", "password": "correct-horse-9"})
    assert response.status_code == 302
    assert response["Location"] == "/app/"
    assert client.get("/app/")["Location"] == "/t/alpha-dental/"
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/app/").status_code == 302  # back to the login page
    response = client.post("/accounts/password/reset/", {"email": "alice@example.test"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


# --- signup from an invitation ----------------------------------------------------------------------------------


@pytest.fixture
def invitation(alice, tenant_a):
    from tenants.services import invitation_create

    with_capture = invitation_create(email="newbie@example.test", role=Role.AGENT, invited_by=alice, tenant=tenant_a)
    mail.outbox.clear()
    return with_capture


@pytest.mark.django_db(transaction=False)
def test_signup_from_an_invitation_joins_the_business_and_creates_none(client, invitation, tenant_a):
    page = client.get(f"/invitations/{invitation.token}/")
    assert page.status_code == 200
    assert "Alpha Dental" in page.content.decode()
    signup_page = client.get(f"{SIGNUP_URL}?invitation={invitation.token}")
    html = signup_page.content.decode()
    assert "Join Alpha Dental" in html
    assert 'value="newbie@example.test"' in html

    tenants_before = Tenant.objects.count()
    response = client.post(
        SIGNUP_URL,
        {
            "full_name": "Nora Newbie",
            "email": "newbie@example.test",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "business_name": "",
            "timezone": "",
            "invitation": invitation.token,
        },
    )
    assert response.status_code == 302, response.context["form"].errors if response.context else response
    assert Tenant.objects.count() == tenants_before
    user = User.objects.get(email="newbie@example.test")
    assert Membership.objects.get(user=user).tenant == tenant_a
    assert Membership.objects.get(user=user).role == Role.AGENT
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    # The invitation link proved the address: no second email, signed in straight away.
    assert [m.subject for m in mail.outbox] == []
    assert EmailAddress.objects.get(user=user).verified
    assert response["Location"] == "/app/"
    assert client.get("/app/")["Location"] == "/t/alpha-dental/"
    assert client.get("/t/alpha-dental/").status_code == 200


@pytest.mark.django_db
def test_invitation_signup_via_session_only(client, invitation, tenant_a):
    """The visitor opened the invitation, then went to the plain signup page."""
    client.get(f"/invitations/{invitation.token}/")
    html = client.get(SIGNUP_URL).content.decode()
    assert "Join Alpha Dental" in html
    data = signup_data(email="newbie@example.test", business_name="", timezone="")
    response = client.post(SIGNUP_URL, data)
    assert response.status_code == 302
    assert Membership.objects.filter(user__email="newbie@example.test", tenant=tenant_a).exists()
    assert not Tenant.objects.filter(name="Bright Smile Dental").exists()


@pytest.mark.django_db
def test_invitation_signup_with_another_address_needs_a_business(client, invitation):
    before = counts()
    response = client.post(
        SIGNUP_URL,
        signup_data(email="someone-else@example.test", business_name="", timezone="", invitation=invitation.token),
    )
    assert response.status_code == 200
    assert "was sent to newbie@example.test" in response.context["form"].errors["email"][0]
    assert counts() == before


@pytest.mark.django_db
def test_business_fields_are_only_optional_with_a_valid_invitation(client, invitation):
    before = counts()
    response = client.post(
        SIGNUP_URL, signup_data(email="newbie@example.test", business_name="", invitation="not-a-real-token")
    )
    assert response.status_code == 200
    assert response.context["form"].errors["business_name"] == ["Enter your business name."]
    assert counts() == before
