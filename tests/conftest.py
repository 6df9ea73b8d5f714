"""Shared fixtures: the healthchecks-style cast, scoped by default.

- alice: owner of tenant_a          - bob: agent of tenant_a (read-only for settings)
- sam: supervisor of tenant_a       - charlie: owner of tenant_b (another tenant; must see nothing of A)
- nina: agent of an agency covering tenant_a after hours

Services: tests marked `postgres`, `redis` or `browser` skip when the service is missing, except
under REQUIRE_SERVICES=1 (CI), where a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings

from tenants.models import AgencyRole, Role
from tests.factories import (
    AgencyFactory,
    AgencyMembershipFactory,
    CoverageFactory,
    MembershipFactory,
    TenantFactory,
)

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 and {reason}", pytrace=False)
    pytest.skip(reason)


def _redis_ok() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


def pytest_runtest_setup(item):
    if (
        item.get_closest_marker("postgres")
        and settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
    ):
        service_missing("this test needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis") and not _redis_ok():
        service_missing("this test needs Redis: set REDIS_URL=redis://...")
    if item.get_closest_marker("browser") and not shutil.which("chromium"):
        service_missing("this test needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Ids repeat across tests (rolled back), so per-process caches keyed by id must not leak."""
    from django.core.cache import cache

    from agents.services import forget_taken
    from flows.runtime import clear_cache

    clear_cache()
    cache.clear()
    forget_taken()
    yield


@pytest.fixture
def tenant_a(db):
    return TenantFactory(name="Alpha Dental", slug="alpha-dental")


@pytest.fixture
def tenant_b(db):
    return TenantFactory(name="Beta Plumbing", slug="beta-plumbing")


@pytest.fixture
def alice(tenant_a):
    return MembershipFactory(tenant=tenant_a, role=Role.OWNER, user__email="alice@example.test").user


@pytest.fixture
def bob(tenant_a):
    return MembershipFactory(tenant=tenant_a, role=Role.AGENT, user__email="bob@example.test").user


@pytest.fixture
def sam(tenant_a):
    return MembershipFactory(tenant=tenant_a, role=Role.SUPERVISOR, user__email="sam@example.test").user


@pytest.fixture
def charlie(tenant_b):
    return MembershipFactory(tenant=tenant_b, role=Role.OWNER, user__email="charlie@example.test").user


@pytest.fixture
def agency(db):
    return AgencyFactory(name="Night Desk", slug="night-desk")


@pytest.fixture
def coverage_a(agency, tenant_a):
    return CoverageFactory(agency=agency, tenant=tenant_a)


@pytest.fixture
def nina(agency, coverage_a):
    return AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT, user__email="nina@example.test").user


@pytest.fixture
def client_for(client):
    """client_for(user) -> a Django test client logged in as that user."""

    def make(user):
        from django.test import Client

        c = Client()
        c.force_login(user)
        return c

    return make
