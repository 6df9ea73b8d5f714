"""Isolation matrix over the admin registry (generated, not hand-listed).

For every model registered in the admin: a tenant-scoped admin shows tenant A's rows to A's owner,
answers 404 to B's owner for A's rows and never lists them, lets A's supervisor read but not
write (403), and keeps agents out. Platform admins (third-party and platform models) answer 403
to tenant owners. A new admin registration joins this matrix automatically; one without a
factory in tests/factories.FACTORIES fails here until it gets one.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.forms import ModelChoiceField
from django.urls import reverse

from tenants.admin_site import TenantModelAdmin
from tenants.models import Tenant, TenantOwned
from tenants.scoping import unscoped
from tests.factories import FACTORIES, UserFactory

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
TENANT_ADMINS = [(m, a) for m, a in REGISTRY if isinstance(a, TenantModelAdmin)]
PLATFORM_ADMINS = [(m, a) for m, a in REGISTRY if not isinstance(a, TenantModelAdmin)]


def _id(item):
    return item[0]._meta.label


def admin_url(model, name, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{name}", args=args)


def make_row(model, tenant):
    if model not in FACTORIES:
        pytest.fail(f"{model._meta.label} is in the admin but has no factory in tests/factories.FACTORIES")
    with unscoped("building isolation fixtures"):
        return FACTORIES[model](tenant)


@pytest.mark.parametrize("entry", TENANT_ADMINS, ids=_id)
def test_other_tenants_owner_gets_404_and_never_sees_the_row(entry, client_for, alice, charlie, tenant_a):
    model, _ = entry
    row = make_row(model, tenant_a)
    owner_b = client_for(charlie)
    assert owner_b.get(admin_url(model, "change", row.pk)).status_code == 404
    assert owner_b.post(admin_url(model, "change", row.pk), {}).status_code == 404
    if model is not Tenant:
        assert owner_b.get(admin_url(model, "history", row.pk)).status_code == 404
        assert owner_b.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code in (403, 404)
    listing = owner_b.get(admin_url(model, "changelist"))
    assert listing.status_code == 200
    assert row.pk not in {obj.pk for obj in listing.context["cl"].result_list}
    with unscoped("assert the row survived"):
        assert model._base_manager.filter(pk=row.pk).exists()


@pytest.mark.parametrize("entry", TENANT_ADMINS, ids=_id)
def test_own_owner_sees_the_row(entry, client_for, alice, tenant_a):
    model, _ = entry
    row = make_row(model, tenant_a)
    owner_a = client_for(alice)
    assert owner_a.get(admin_url(model, "change", row.pk)).status_code == 200
    listing = owner_a.get(admin_url(model, "changelist"))
    assert row.pk in {obj.pk for obj in listing.context["cl"].result_list}


@pytest.mark.parametrize("entry", TENANT_ADMINS, ids=_id)
def test_supervisor_reads_but_cannot_write(entry, client_for, sam, tenant_a):
    model, _ = entry
    row = make_row(model, tenant_a)
    supervisor = client_for(sam)
    assert supervisor.get(admin_url(model, "change", row.pk)).status_code == 200
    assert supervisor.post(admin_url(model, "change", row.pk), {}).status_code == 403
    assert supervisor.get(admin_url(model, "add")).status_code == 403


@pytest.mark.parametrize("entry", TENANT_ADMINS, ids=_id)
def test_agents_have_no_admin_access(entry, client_for, bob, nina, tenant_a):
    model, _ = entry
    row = make_row(model, tenant_a)
    for user in (bob, nina):
        response = client_for(user).get(admin_url(model, "change", row.pk))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("entry", TENANT_ADMINS, ids=_id)
def test_add_form_offers_only_own_tenants_choices(entry, client_for, alice, tenant_a, tenant_b):
    model, model_admin = entry
    for m in FACTORIES:
        make_row(m, tenant_b)
        make_row(m, tenant_a)
    response = client_for(alice).get(admin_url(model, "add"))
    if response.status_code == 403:
        return  # read-only admins (managed from the business pages) have no add form
    assert response.status_code == 200
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        if not isinstance(field, ModelChoiceField):
            continue
        related = field.queryset.model
        if related is Tenant:
            assert set(field.queryset.values_list("pk", flat=True)) == {tenant_a.pk}, name
        elif issubclass(related, TenantOwned):
            from tenants.scoping import tenant_scope

            with tenant_scope([tenant_a.id, tenant_b.id]):
                tenants = {obj.tenant_id for obj in field.queryset}
            assert tenants <= {tenant_a.pk}, f"{model._meta.label}.{name} offers another tenant's rows"


OBJECT_VIEWS = [
    (model, model_admin, name, need)
    for model, model_admin in TENANT_ADMINS
    for name, need in getattr(model_admin, "object_views", ())
]


@pytest.mark.parametrize("entry", OBJECT_VIEWS, ids=lambda e: f"{e[0]._meta.label}.{e[2]}")
def test_custom_object_views_are_isolated(entry, client_for, alice, sam, charlie, tenant_a):
    """Extra admin views (publish, simulate, rollback...): 404 for another tenant, 403 for read-only roles."""
    model, _, name, need = entry
    row = make_row(model, tenant_a)
    url = admin_url(model, name, row.pk)
    for method in ("get", "post"):
        assert getattr(client_for(charlie), method)(url).status_code == 404, f"{method} {url}"
    supervisor = client_for(sam)
    if need == "write":
        assert supervisor.post(url).status_code == 403
    else:
        assert supervisor.get(url).status_code == 200
    assert client_for(alice).get(url).status_code in (200, 302)


@pytest.mark.parametrize("entry", PLATFORM_ADMINS, ids=_id)
def test_platform_admins_are_superuser_only(entry, client_for, alice, tenant_a):
    model, _ = entry
    assert client_for(alice).get(admin_url(model, "changelist")).status_code == 403
    root = UserFactory(is_superuser=True, is_staff=True)
    assert client_for(root).get(admin_url(model, "changelist")).status_code == 200


def test_admin_index_lists_only_business_settings(client_for, alice):
    response = client_for(alice).get("/admin/")
    assert response.status_code == 200
    labels = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    expected = {m.__name__ for m, _ in TENANT_ADMINS}
    assert labels <= expected and labels


def test_agent_cannot_log_into_the_admin(client, bob):
    from tests.factories import PASSWORD

    response = client.post("/admin/login/?next=/admin/", {"username": bob.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "no access to business settings" in response.content.decode()


def test_owner_logs_into_the_admin_with_email_and_password(client, alice):
    from tests.factories import PASSWORD

    response = client.post("/admin/login/?next=/admin/", {"username": alice.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_owner_edits_their_business_in_the_admin(client_for, alice, tenant_a):
    response = client_for(alice).post(
        admin_url(Tenant, "change", tenant_a.pk),
        {"name": "Alpha Dental Care", "timezone": "Europe/London", "greeting": "Hi", "agent_notes": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant_a.refresh_from_db()
    assert (tenant_a.name, tenant_a.timezone) == ("Alpha Dental Care", "Europe/London")
    assert tenant_a.slug == "alpha-dental"  # read-only for tenants


def test_bad_timezone_in_the_admin_is_a_clear_error(client_for, alice, tenant_a):
    response = client_for(alice).post(
        admin_url(Tenant, "change", tenant_a.pk), {"name": "Alpha", "timezone": "Mars/Olympus", "greeting": ""}
    )
    assert response.status_code == 200
    assert "is not a time zone name" in response.content.decode()
    tenant_a.refresh_from_db()
    assert tenant_a.timezone == "America/New_York"
