"""/api/v1/: roles, tenant isolation, API keys, error bodies and the schema.

Cast (tests/conftest.py): alice owner A, sam supervisor A, bob agent A, charlie owner B, nina agency agent on A.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import ApiKey, AuditEvent, Coverage, Invitation, Membership, Role, Tenant
from tenants.scoping import tenant_scope, unscoped
from tests.factories import AgencyFactory, CoverageFactory, MembershipFactory, make_api_key

A = "/api/v1/tenants/alpha-dental"
B = "/api/v1/tenants/beta-plumbing"


# --- clients ---------------------------------------------------------------------------------------
def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def keyed(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def call(client: APIClient, method: str, url: str, body: dict | None = None):
    return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]


@pytest.fixture
def read_key_a(tenant_a):
    return make_api_key(tenant_a, "read")[1]


@pytest.fixture
def write_key_a(tenant_a):
    return make_api_key(tenant_a, "write")[1]


@pytest.fixture
def write_key_b(tenant_b):
    return make_api_key(tenant_b, "write")[1]


@pytest.fixture
def dave(tenant_a):
    """An admin of tenant A (not an owner)."""
    return MembershipFactory(tenant=tenant_a, role=Role.ADMIN, user__email="dave@example.test").user


@pytest.fixture
def objects_a(tenant_a, alice, bob, coverage_a):
    """One row of each kind in tenant A (bob's membership stands for memberships)."""
    return {
        "membership": Membership.objects.get(tenant=tenant_a, user=bob),
        "invitation": Invitation.objects.create(email="new@example.test", tenant=tenant_a, role=Role.AGENT),
        "api_key": make_api_key(tenant_a, "read")[0],
        "coverage": coverage_a,
    }


@pytest.fixture
def objects_b(tenant_b, charlie):
    return {
        "membership": MembershipFactory(tenant=tenant_b, role=Role.AGENT),
        "invitation": Invitation.objects.create(email="b@example.test", tenant=tenant_b, role=Role.AGENT),
        "api_key": make_api_key(tenant_b, "read")[0],
        "coverage": CoverageFactory(tenant=tenant_b),
    }


def write_requests(base: str, objs: dict, invite_code: str) -> list[tuple[str, str, dict | None]]:
    """Every write endpoint under a tenant, aimed at the given objects."""
    return [
        ("patch", f"{base}/", {"name": "Renamed"}),
        ("patch", f"{base}/memberships/{objs['membership'].pk}/", {"role": "admin"}),
        ("delete", f"{base}/memberships/{objs['membership'].pk}/", None),
        ("post", f"{base}/invitations/", {"email": "someone@example.test", "role": "agent"}),
        ("delete", f"{base}/invitations/{objs['invitation'].pk}/", None),
        ("post", f"{base}/api-keys/", {"name": "ci", "access": "write"}),
        ("delete", f"{base}/api-keys/{objs['api_key'].pk}/", None),
        ("post", f"{base}/coverage/", {"invite_code": invite_code, "mode": "always"}),
        ("delete", f"{base}/coverage/{objs['coverage'].pk}/", None),
    ]


def all_requests(base: str, objs: dict, invite_code: str) -> list[tuple[str, str, dict | None]]:
    reads = [
        ("get", f"{base}/", None),
        ("get", f"{base}/memberships/", None),
        ("get", f"{base}/invitations/", None),
        ("get", f"{base}/api-keys/", None),
        ("get", f"{base}/coverage/", None),
        ("get", f"{base}/audit-events/", None),
    ] + [
        ("get", f"{base}/{kind}/{objs[name].pk}/", None)
        for kind, name in (
            ("memberships", "membership"),
            ("invitations", "invitation"),
            ("api-keys", "api_key"),
            ("coverage", "coverage"),
        )
    ]
    return reads + write_requests(base, objs, invite_code)


def snapshot(tenant: Tenant) -> dict:
    """What any write could change for a tenant."""
    with unscoped("test: compare before/after"):
        audit = AuditEvent.objects.filter(tenant=tenant).count()
    return {
        "tenant": Tenant.objects.filter(pk=tenant.pk).values("name", "timezone", "greeting", "agent_notes").get(),
        "memberships": sorted(Membership.objects.filter(tenant=tenant).values_list("id", "role")),
        "invitations": sorted(Invitation.objects.filter(tenant=tenant).values_list("id", "revoked_at")),
        "api_keys": sorted(ApiKey.objects.filter(tenant=tenant).values_list("id", "revoked_at")),
        "coverage": sorted(Coverage.objects.filter(tenant=tenant).values_list("id", "active", "mode")),
        "audit": audit,
    }


# --- /me/ ------------------------------------------------------------------------------------------
def test_me_for_a_user_uses_one_access_query(alice, django_assert_num_queries):
    client = session(alice)
    with django_assert_num_queries(3):  # session, user, access (one UNION)
        response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json() == {
        "principal": "user",
        "email": "alice@example.test",
        "name": alice.full_name,
        "api_key": None,
        "tenants": [{"slug": "alpha-dental", "name": "Alpha Dental", "role": "owner", "via": "member"}],
    }


def test_me_for_an_agency_agent_and_for_an_api_key(nina, read_key_a):
    assert session(nina).get("/api/v1/me/").json()["tenants"] == [
        {"slug": "alpha-dental", "name": "Alpha Dental", "role": "agent", "via": "agency"}
    ]
    body = keyed(read_key_a).get("/api/v1/me/").json()
    assert body["principal"] == "api_key" and body["email"] is None
    assert body["api_key"]["access"] == "read" and read_key_a not in str(body)
    assert body["tenants"] == [{"slug": "alpha-dental", "name": "Alpha Dental", "role": "supervisor", "via": "api_key"}]


def test_anonymous_gets_401_that_says_how_to_authenticate(db):
    response = APIClient().get("/api/v1/me/")
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "not_authenticated" and "Authorization: Api-Key" in error["message"]


def test_revoked_or_bad_key_gets_readable_401(tenant_a, alice):
    key, raw = make_api_key(tenant_a, "write")
    assert keyed(raw).get(f"{A}/").status_code == 200
    assert session(alice).delete(f"{A}/api-keys/{key.pk}/").status_code == 204
    for client in (keyed(raw), keyed("sb_not_a_real_key")):
        response = client.get(f"{A}/")
        assert response.status_code == 401
        error = error_of(response)
        assert "revoked" in error["message"] and "Authorization: Api-Key" in error["message"]
    malformed = APIClient()
    malformed.credentials(HTTP_AUTHORIZATION="Api-Key two parts")
    assert "Authorization: Api-Key <key>" in error_of(malformed.get("/api/v1/me/"))["message"]


# --- tenants -------------------------------------------------------------------------------------
def test_tenant_list_shows_only_own_tenants(alice, charlie, nina, write_key_b):
    def slugs(client):
        response = client.get("/api/v1/tenants/")
        assert response.status_code == 200
        return [(t["slug"], t["role"], t["via"]) for t in response.json()["results"]]

    assert slugs(session(alice)) == [("alpha-dental", "owner", "member")]
    assert slugs(session(charlie)) == [("beta-plumbing", "owner", "member")]
    assert slugs(session(nina)) == [("alpha-dental", "agent", "agency")]
    assert slugs(keyed(write_key_b)) == [("beta-plumbing", "admin", "api_key")]


def test_tenant_detail_is_readable_by_any_role(bob, nina, read_key_a):
    for client in (session(bob), session(nina), keyed(read_key_a)):
        response = client.get(f"{A}/")
        assert response.status_code == 200
        assert set(response.json()) == {
            "name",
            "slug",
            "timezone",
            "status",
            "greeting",
            "agent_notes",
            "created_at",
        }


def test_tenant_patch_by_admin_session_and_write_key(alice, tenant_a, write_key_a):
    response = session(alice).patch(
        f"{A}/",
        {"name": "Alpha Dental Care", "timezone": "Europe/London", "greeting": "Alpha, this is Sam."},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["timezone"] == "Europe/London"
    assert keyed(write_key_a).patch(f"{A}/", {"agent_notes": "Park at the back."}, format="json").status_code == 200
    tenant_a.refresh_from_db()
    assert (tenant_a.name, tenant_a.timezone, tenant_a.agent_notes) == (
        "Alpha Dental Care",
        "Europe/London",
        "Park at the back.",
    )


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "America/New_York"),
        ({"name": "   "}, "name", "business name"),
        ({"status": "active"}, "status", "send only"),
        ({"greeting": "x" * 201}, "greeting", "200"),
    ],
)
def test_tenant_patch_bad_input_is_400_and_changes_nothing(alice, tenant_a, body, field, hint):
    before = snapshot(tenant_a)
    response = session(alice).patch(f"{A}/", body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert [f["field"] for f in error["fields"]] == [field]
    assert hint in error["fields"][0]["message"]
    assert snapshot(tenant_a) == before


# --- the isolation and role matrices ---------------------------------------------------------------
def test_other_tenant_gets_404_on_every_tenant_a_url(tenant_a, tenant_b, objects_a, charlie, write_key_b):
    code = AgencyFactory().invite_code
    before = snapshot(tenant_a), snapshot(tenant_b)
    for client, who in ((session(charlie), "charlie"), (keyed(write_key_b), "tenant B write key")):
        for method, url, body in all_requests(A, objects_a, code):
            response = call(client, method, url, body)
            assert response.status_code == 404, (who, method, url, response.status_code)
            assert error_of(response)["code"] == "not_found"
    assert (snapshot(tenant_a), snapshot(tenant_b)) == before


def test_other_tenants_object_ids_under_own_slug_are_404(tenant_a, tenant_b, alice, objects_b, write_key_a):
    before = snapshot(tenant_a), snapshot(tenant_b)
    detail_requests = [r for r in all_requests(A, objects_b, "unused") if r[1].rstrip("/").split("/")[-1].isdigit()]
    assert len(detail_requests) == 9  # 4 reads, membership patch, 4 deletes
    for client, is_key in ((session(alice), False), (keyed(write_key_a), True)):
        for method, url, body in detail_requests:
            response = call(client, method, url, body)
            if is_key and "/coverage/" in url and method != "get":
                # Coverage writes are owner-only: the role check answers before any lookup, so it leaks nothing.
                assert response.status_code == 403, (method, url, response.status_code)
                continue
            assert response.status_code == 404, (method, url, response.status_code)
            assert "another tenant" in error_of(response)["message"]
    assert (snapshot(tenant_a), snapshot(tenant_b)) == before


def test_agent_supervisor_and_read_key_get_403_on_every_write(tenant_a, objects_a, bob, sam, nina, read_key_a):
    code = AgencyFactory().invite_code
    before = snapshot(tenant_a)
    for client, role in (
        (session(bob), "agent"),
        (session(nina), "agent"),
        (session(sam), "supervisor"),
        (keyed(read_key_a), "supervisor"),
    ):
        for method, url, body in write_requests(A, objects_a, code):
            response = call(client, method, url, body)
            assert response.status_code == 403, (role, method, url, response.status_code)
            error = error_of(response)
            assert error["code"] == "permission_denied" and f"Your role ({role})" in error["message"]
    assert snapshot(tenant_a) == before


def test_admin_only_lists_are_403_for_agents_and_read_keys(tenant_a, bob, read_key_a):
    for client in (session(bob), keyed(read_key_a)):
        for path in ("invitations", "api-keys", "coverage", "audit-events"):
            assert client.get(f"{A}/{path}/").status_code == 403, path
        assert client.get(f"{A}/memberships/").status_code == 200


def test_write_key_can_write_but_not_owner_only_coverage(tenant_a, objects_a, write_key_a):
    client = keyed(write_key_a)
    m, inv, key, cov = (objects_a[k] for k in ("membership", "invitation", "api_key", "coverage"))
    assert client.patch(f"{A}/memberships/{m.pk}/", {"role": "supervisor"}, format="json").status_code == 200
    assert (
        client.post(f"{A}/invitations/", {"email": "x@example.test", "role": "agent"}, format="json").status_code == 201
    )
    assert client.delete(f"{A}/invitations/{inv.pk}/").status_code == 204
    assert client.post(f"{A}/api-keys/", {"name": "ci"}, format="json").status_code == 201
    assert client.delete(f"{A}/api-keys/{key.pk}/").status_code == 204
    assert client.post(f"{A}/coverage/", {"invite_code": AgencyFactory().invite_code}, format="json").status_code == 403
    assert client.delete(f"{A}/coverage/{cov.pk}/").status_code == 403
    m.refresh_from_db()
    assert m.role == Role.SUPERVISOR


# --- memberships ---------------------------------------------------------------------------------
def test_membership_list_readable_by_agents(alice, bob, sam):
    response = session(bob).get(f"{A}/memberships/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [(m["email"], m["role"]) for m in body["results"]] == [
        ("alice@example.test", "owner"),
        ("bob@example.test", "agent"),
        ("sam@example.test", "supervisor"),
    ]


def test_membership_role_change_and_unknown_role(tenant_a, alice, bob):
    membership = Membership.objects.get(tenant=tenant_a, user=bob)
    client = session(alice)
    response = client.patch(f"{A}/memberships/{membership.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    before = snapshot(tenant_a)
    response = client.patch(f"{A}/memberships/{membership.pk}/", {"role": "boss"}, format="json")
    assert response.status_code == 400
    field = error_of(response)["fields"][0]
    assert field["field"] == "role" and "owner, admin, supervisor, agent" in field["message"]
    assert snapshot(tenant_a) == before


def test_owner_rules_admin_cannot_touch_owner_and_last_owner_stays(tenant_a, alice, dave):
    owner = Membership.objects.get(tenant=tenant_a, user=alice)
    before = snapshot(tenant_a)
    for method, body in (("patch", {"role": "agent"}), ("delete", None)):
        response = call(session(dave), method, f"{A}/memberships/{owner.pk}/", body)
        assert response.status_code == 403
        assert "Only an owner" in error_of(response)["message"]
    for method, body in (("patch", {"role": "admin"}), ("delete", None)):
        response = call(session(alice), method, f"{A}/memberships/{owner.pk}/", body)
        assert response.status_code == 400
        assert "at least one owner" in error_of(response)["message"]
    assert snapshot(tenant_a) == before


def test_membership_remove(tenant_a, alice, bob):
    membership = Membership.objects.get(tenant=tenant_a, user=bob)
    assert session(alice).delete(f"{A}/memberships/{membership.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert session(bob).get(f"{A}/").status_code == 404  # no access any more


# --- invitations ---------------------------------------------------------------------------------
def test_invitation_create_list_revoke_never_shows_token(
    tenant_a, alice, mailoutbox, django_capture_on_commit_callbacks
):
    client = session(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{A}/invitations/", {"email": "New@Example.test", "role": "supervisor"}, format="json")
    assert response.status_code == 201, response.content
    invitation = Invitation.objects.get(tenant=tenant_a, email="new@example.test")
    assert response.json()["role"] == "supervisor" and "token" not in response.json()
    assert len(mailoutbox) == 1
    listing = client.get(f"{A}/invitations/")
    assert [i["email"] for i in listing.json()["results"]] == ["new@example.test"]
    for r in (response, listing, client.get(f"{A}/invitations/{invitation.pk}/")):
        assert invitation.token not in r.content.decode()
    assert client.delete(f"{A}/invitations/{invitation.pk}/").status_code == 204
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert client.get(f"{A}/invitations/").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"email": "not-an-email", "role": "agent"}, "email", "valid email"),
        ({"email": "x@example.test", "role": "boss"}, "role", "owner, admin, supervisor, agent"),
        ({"role": "agent"}, "email", "required"),
        ({"email": "bob@example.test", "role": "agent"}, "email", "already a member"),
        ({"email": "x@example.test", "role": "agent", "token": "mine"}, "token", "send only"),
    ],
)
def test_invitation_bad_input(tenant_a, alice, bob, body, field, hint):
    before = snapshot(tenant_a)
    response = session(alice).post(f"{A}/invitations/", body, format="json")
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert [f["field"] for f in fields] == [field] and hint in fields[0]["message"]
    assert snapshot(tenant_a) == before


def test_only_an_owner_can_invite_an_owner(tenant_a, dave, write_key_a):
    before = snapshot(tenant_a)
    for client in (session(dave), keyed(write_key_a)):
        response = client.post(f"{A}/invitations/", {"email": "x@example.test", "role": "owner"}, format="json")
        assert response.status_code == 400
        assert error_of(response)["fields"][0]["message"] == "Only an owner can invite another owner."
    assert snapshot(tenant_a) == before


# --- API keys ------------------------------------------------------------------------------------
def test_api_key_raw_key_only_in_create_response(tenant_a, alice):
    client = session(alice)
    response = client.post(f"{A}/api-keys/", {"name": "Zapier", "access": "write"}, format="json")
    assert response.status_code == 201, response.content
    raw = response.json()["key"]
    key = ApiKey.objects.get(tenant=tenant_a, name="Zapier")
    assert raw.startswith(f"sb_{key.prefix}_") and response.json()["prefix"] == key.prefix
    assert "hashed_key" not in response.json()
    listing = client.get(f"{A}/api-keys/")
    detail = client.get(f"{A}/api-keys/{key.pk}/")
    me = keyed(raw).get("/api/v1/me/")
    for r in (listing, detail, me):
        assert r.status_code == 200
        assert raw not in r.content.decode() and key.hashed_key not in r.content.decode()
        assert "key" not in (r.json()["results"][0] if "results" in r.json() else r.json())
    assert set(listing.json()["results"][0]) == {
        "id",
        "prefix",
        "name",
        "access",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert keyed(raw).patch(f"{A}/", {"greeting": "Hi"}, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"name": "  ", "access": "read"}, "name", "recognise it"),
        ({"name": "x", "access": "admin"}, "access", "read, write"),
        ({"access": "read"}, "name", "required"),
    ],
)
def test_api_key_bad_input(tenant_a, alice, body, field, hint):
    before = snapshot(tenant_a)
    response = session(alice).post(f"{A}/api-keys/", body, format="json")
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert [f["field"] for f in fields] == [field] and hint in fields[0]["message"]
    assert snapshot(tenant_a) == before


# --- coverage ------------------------------------------------------------------------------------
def test_owner_grants_and_revokes_coverage(tenant_a, alice, nina, coverage_a):
    other = AgencyFactory(name="Day Desk")
    client = session(alice)
    response = client.post(f"{A}/coverage/", {"invite_code": other.invite_code, "mode": "always"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["agency"] == "Day Desk" and response.json()["mode"] == "always"
    assert "invite_code" not in response.json()
    assert Coverage.objects.get(tenant=tenant_a, agency=other).active
    assert {c["agency"] for c in client.get(f"{A}/coverage/").json()["results"]} == {"Day Desk", "Night Desk"}
    assert client.delete(f"{A}/coverage/{coverage_a.pk}/").status_code == 204
    coverage_a.refresh_from_db()
    assert not coverage_a.active
    assert session(nina).get("/api/v1/me/").json()["tenants"] == []


def test_coverage_is_owner_only_to_write_and_admin_to_read(tenant_a, dave, coverage_a):
    client = session(dave)
    assert client.get(f"{A}/coverage/").status_code == 200
    response = client.post(f"{A}/coverage/", {"invite_code": AgencyFactory().invite_code}, format="json")
    assert response.status_code == 403 and "needs owner" in error_of(response)["message"]
    assert client.delete(f"{A}/coverage/{coverage_a.pk}/").status_code == 403


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"invite_code": "nope", "mode": "always"}, "invite_code", "No agency has that invite code"),
        ({"invite_code": "x", "mode": "sometimes"}, "mode", "always, after_hours, overflow"),
    ],
)
def test_coverage_bad_input(tenant_a, alice, body, field, hint):
    before = snapshot(tenant_a)
    response = session(alice).post(f"{A}/coverage/", body, format="json")
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert [f["field"] for f in fields] == [field] and hint in fields[0]["message"]
    assert snapshot(tenant_a) == before


# --- audit events --------------------------------------------------------------------------------
def test_audit_events_list_is_admin_only_and_scoped(tenant_a, tenant_b, alice, dave, write_key_a):
    with tenant_scope([tenant_a.id, tenant_b.id]):
        AuditEvent.objects.create(tenant=tenant_a, action="a.thing", actor=alice)
        AuditEvent.objects.create(tenant=tenant_b, action="b.thing")
    for client in (session(alice), session(dave), keyed(write_key_a)):
        response = client.get(f"{A}/audit-events/")
        assert response.status_code == 200
        actions = [e["action"] for e in response.json()["results"]]
        assert "a.thing" in actions and "b.thing" not in actions
    event = next(e for e in response.json()["results"] if e["action"] == "a.thing")
    assert event["actor"] == "alice@example.test"


# --- schema --------------------------------------------------------------------------------------
def test_schema_and_docs_answer(db):
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert "ApiKeyAuth" in spec["components"]["securitySchemes"]
    assert "/api/v1/tenants/{tenant_slug}/memberships/{id}/" in spec["paths"]
    assert client.get("/api/docs/").status_code == 200
