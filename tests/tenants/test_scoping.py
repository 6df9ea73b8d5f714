"""The tenant scope fails closed, holds several tenants, and is entered by each door."""

import pytest
from django_scopes.exceptions import ScopeError

from tenants.models import AuditEvent
from tenants.scoping import tenant_scope, unscoped
from tenants.selectors import tenant_access_for_user
from tenants.tasks import TenantTask


@pytest.fixture
def events(tenant_a, tenant_b):
    a = AuditEvent.objects.create(tenant=tenant_a, action="a")
    b = AuditEvent.objects.create(tenant=tenant_b, action="b")
    return a, b


def test_query_outside_a_scope_raises(events):
    with pytest.raises(ScopeError):
        list(AuditEvent.objects.all())
    with pytest.raises(ScopeError):
        AuditEvent.objects.filter(action="a").first()
    with pytest.raises(ScopeError):
        AuditEvent.objects.count()


def test_scope_limits_rows_to_its_tenants(events, tenant_a, tenant_b):
    with tenant_scope([tenant_a.id]):
        assert [e.action for e in AuditEvent.objects.all()] == ["a"]
        assert not AuditEvent.objects.filter(pk=events[1].pk).exists()
    with tenant_scope([tenant_a.id, tenant_b.id]):
        assert sorted(e.action for e in AuditEvent.objects.all()) == ["a", "b"]
    with tenant_scope([]):
        assert AuditEvent.objects.count() == 0


def test_escape_hatch_is_explicit(events):
    with unscoped("test: platform-wide count"):
        assert AuditEvent.objects.count() == 2


def test_access_selector_is_one_query(django_assert_num_queries, alice, nina, tenant_a, tenant_b, charlie):
    from tenants.models import Membership, Role

    Membership.objects.create(user=nina, tenant=tenant_b, role=Role.ADMIN)
    with django_assert_num_queries(1):
        access = tenant_access_for_user(nina)
    assert {a.slug: (a.role, a.via) for a in access.values()} == {
        "alpha-dental": ("agent", "agency"),
        "beta-plumbing": ("admin", "member"),
    }


def test_revoked_coverage_removes_access(nina, coverage_a, tenant_a):
    from tenants.services import coverage_revoke

    assert tenant_a.id in tenant_access_for_user(nina)
    coverage_revoke(coverage=coverage_a)
    assert tenant_a.id not in tenant_access_for_user(nina)


def test_tenant_task_enters_only_its_tenant(events, tenant_a):
    from contactcenter.celery import app

    seen = []

    @app.task(base=TenantTask, name="tests.scoping.probe")
    def probe(*, tenant_id):
        seen.append(sorted(e.action for e in AuditEvent.objects.all()))

    probe.delay(tenant_id=tenant_a.id)
    assert seen == [["a"]]
    with pytest.raises(TypeError, match="tenant_id"):
        probe.delay()
