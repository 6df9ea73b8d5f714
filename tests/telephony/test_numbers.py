"""Phone numbers in the tenant admin: normalised, validated, and one business per number."""

import pytest
from django.urls import reverse

from telephony.models import PhoneNumber
from tenants.scoping import tenant_scope, unscoped
from tests.factories import make_flow


@pytest.fixture
def flow_a(tenant_a):
    with tenant_scope([tenant_a.id]):
        return make_flow(tenant_a)


def add(client, **data):
    form = {
        "number": "",
        "label": "Main",
        "flow": "",
        "active": "on",
        "fallback_number": "",
        "transcribe_voicemail": "on",
    }
    form.update(data)
    return client.post(reverse("admin:telephony_phonenumber_add"), form)


def test_owner_adds_a_number_in_any_common_format(client_for, alice, flow_a):
    response = add(client_for(alice), number="+1 (617) 555-0142", flow=flow_a.pk, fallback_number="617.555.0143")
    assert response.status_code == 302
    with unscoped("assert"):
        number = PhoneNumber.objects.get()
    assert (number.number, number.fallback_number, number.tenant_id) == (
        "+16175550142",
        "+16175550143",
        flow_a.tenant_id,
    )


def test_bad_numbers_get_errors_that_say_how_to_fix_them(client_for, alice, flow_a):
    response = add(client_for(alice), number="call me maybe", flow=flow_a.pk, fallback_number="+16175550142")
    assert response.status_code == 200
    assert "country code" in str(response.context["adminform"].form.errors["number"])
    response = add(client_for(alice), number="+16175550142", flow=flow_a.pk, fallback_number="+16175550142")
    assert "loop back" in str(response.context["adminform"].form.errors["fallback_number"])
    with unscoped("assert"):
        assert not PhoneNumber.objects.exists()


def test_a_number_belongs_to_one_business(client_for, alice, charlie, tenant_b, flow_a):
    assert add(client_for(alice), number="+16175550142", flow=flow_a.pk).status_code == 302
    with tenant_scope([tenant_b.id]):
        flow_b = make_flow(tenant_b)
    response = add(client_for(charlie), number="+16175550142", flow=flow_b.pk)
    assert response.status_code == 200 and "number" in response.context["adminform"].form.errors


def test_the_flow_choice_offers_only_the_businesss_own_scripts(client_for, charlie, tenant_b, flow_a):
    response = add(client_for(charlie), number="+16175550144", flow=flow_a.pk)
    assert response.status_code == 200 and "flow" in response.context["adminform"].form.errors
