"""Isolation matrix over the URLconf and the websocket routes (generated, not hand-listed).

Every route is walked. For routes under a tenant (``tenant_slug``): another tenant's owner gets 404
for every method, also when using their own slug with this tenant's object id; roles below the
view's declared minimum get 403; an agency agent reaches a covered tenant only until coverage is
revoked; anonymous users are sent to sign in (pages) or refused (API). Routes without a tenant must
not show another tenant's data. A route with object kwargs must say which model they refer to
(``isolation_model``) or be listed in EXEMPT with the reason; otherwise this test fails, so new
routes join the matrix automatically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from contactcenter.routing import websocket_urlpatterns
from tenants.models import ROLE_RANK, Agency, Invitation, Role
from tenants.scoping import unscoped
from tests.factories import FACTORIES, make_api_key

# Routes outside the matrix, each with the reason.
EXEMPT_PREFIXES = {
    "admin/": "covered by tests/test_isolation_admin.py (generated from the admin registry)",
    "accounts/": "allauth's own account pages act only on the signed-in user",
    "api/schema/": "public API description, no tenant data",
    "api/docs/": "public API description, no tenant data",
    "healthz": "load-balancer probe, no tenant data",
    "static/": "static files",
    "telephony/vonage/": "Vonage webhooks: no user session; every request must carry Vonage's signed JWT "
    "(401 otherwise, tests/telephony/test_webhooks.py) and the tenant comes from the dialled number",
}
EXEMPT_ROUTES = {
    "invitations/<str:token>/": "the token is the capability sent by email; accepting checks the invited "
    "address (tests/tenants/test_pages.py)",
}
UNSAFE = ("post", "put", "patch", "delete")


@dataclass
class Route:
    route: str
    name: str | None
    callback: object

    @property
    def kwargs(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)

    @property
    def drf_cls(self):
        return getattr(self.callback, "cls", None)

    @property
    def methods(self) -> list[str]:
        actions = getattr(self.callback, "actions", None)
        if actions:
            return sorted(actions)
        view_cls = getattr(self.callback, "view_class", None)
        if view_cls is not None:
            return [m for m in ("get", "post", "patch", "delete") if hasattr(view_cls, m)]
        return ["get", "post"]

    def isolation_model(self):
        owner = self.drf_cls or self.callback
        return getattr(owner, "isolation_model", None)

    def roles(self) -> tuple[str, str]:
        if self.drf_cls is not None:
            return self.drf_cls.read_role, self.drf_cls.write_role
        return (
            getattr(self.callback, "tenant_minimum_role", Role.AGENT),
            getattr(self.callback, "tenant_write_role", Role.AGENT),
        )

    def url(self, **values) -> str:
        def sub(match):
            return str(values[match.group(1)])

        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", sub, self.route)


def walk(patterns, prefix: str = "") -> list[Route]:
    routes: list[Route] = []
    for p in patterns:
        if isinstance(p, URLResolver):
            routes += walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            route = prefix + str(p.pattern)
            if "(?P<format>" in route or route.endswith(r"\.(?P<format>[a-z0-9]+)/?$"):
                continue
            routes.append(Route(route, p.name, p.callback))
    return routes


ALL_ROUTES = [
    r
    for r in walk(get_resolver().url_patterns)
    if not any(r.route.startswith(p) for p in EXEMPT_PREFIXES) and r.route not in EXEMPT_ROUTES
]
TENANT_ROUTES = [r for r in ALL_ROUTES if "tenant_slug" in r.kwargs]
AGENCY_ROUTES = [r for r in ALL_ROUTES if "agency_slug" in r.kwargs]
GLOBAL_ROUTES = [r for r in ALL_ROUTES if not r.kwargs]


def _id(route: Route) -> str:
    return route.name or route.route


def test_every_route_is_classified():
    unclassified = [
        r.route for r in ALL_ROUTES if set(r.kwargs) - {"tenant_slug", "agency_slug"} and r.isolation_model() is None
    ]
    assert not unclassified, f"routes with object ids but no isolation_model (or EXEMPT reason): {unclassified}"
    assert TENANT_ROUTES and GLOBAL_ROUTES


def object_for(route: Route, tenant, agency):
    model = route.isolation_model()
    with unscoped("building isolation fixtures"):
        if model is Invitation and "agency_slug" in route.kwargs:
            return Invitation.objects.create(email="x@example.test", agency=agency, role="agent")
        if model is Agency:
            return agency
        return FACTORIES[model](tenant)


def values_for(route: Route, tenant, agency, obj=None) -> dict:
    values = {"tenant_slug": tenant.slug, "agency_slug": agency.slug}
    for kwarg in set(route.kwargs) - {"tenant_slug", "agency_slug"}:
        values[kwarg] = getattr(obj, kwarg) if kwarg != "pk" else obj.pk
    return values


def offered(route: Route, owner_client, url: str) -> list[str]:
    """The methods the route really serves: function views are probed as the tenant's owner (405 = not offered)."""
    if route.drf_cls is not None or getattr(route.callback, "view_class", None) is not None:
        return route.methods
    return (
        [m for m in route.methods if call(owner_client, m, url, api=False).status_code != 405]
        if owner_client
        else route.methods
    )


def call(client, method: str, url: str, *, api: bool):
    if method == "get":
        return client.get(url)
    if api:
        return getattr(client, method)(url, data={}, content_type="application/json")
    return getattr(client, method)(url, data={})


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=_id)
def test_other_tenants_owner_gets_404(route, client_for, alice, charlie, tenant_a, tenant_b, agency):
    obj = object_for(route, tenant_a, agency) if route.isolation_model() else None
    outsider = client_for(charlie)
    api = route.drf_cls is not None
    url = route.url(**values_for(route, tenant_a, agency, obj))
    for method in route.methods:
        response = call(outsider, method, url, api=api)
        assert response.status_code == 404, f"{method.upper()} {url} as another tenant's owner: {response.status_code}"
    if obj is not None and set(route.kwargs) - {"tenant_slug"}:
        # Their own tenant in the URL, this tenant's object id: still 404.
        methods = offered(route, client_for(charlie), route.url(**values_for(route, tenant_b, agency, obj)))
        url = route.url(**values_for(route, tenant_b, agency, obj))
        for method in methods:
            response = call(outsider, method, url, api=api)
            assert response.status_code == 404, f"{method.upper()} {url} (own slug, foreign id): {response.status_code}"


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=_id)
def test_roles_below_the_minimum_get_403(route, client_for, bob, nina, tenant_a, agency):
    read_role, write_role = route.roles()
    obj = object_for(route, tenant_a, agency) if route.isolation_model() else None
    url = route.url(**values_for(route, tenant_a, agency, obj))
    api = route.drf_cls is not None
    for user in (bob, nina):  # an agent of the business, and an agency agent covering it
        client = client_for(user)
        for method in route.methods:
            needed = read_role if method in ("get", "head", "options") else write_role
            if ROLE_RANK[Role(needed)] <= ROLE_RANK[Role.AGENT]:
                continue
            response = call(client, method, url, api=api)
            assert response.status_code in (403, 405), f"{method.upper()} {url} as {user.email}: {response.status_code}"
            if response.status_code == 405:
                assert method != "get"


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=_id)
def test_read_only_api_key_cannot_write_and_other_key_gets_404(route, client, tenant_a, tenant_b, agency):
    if route.drf_cls is None:
        return
    obj = object_for(route, tenant_a, agency) if route.isolation_model() else None
    url = route.url(**values_for(route, tenant_a, agency, obj))
    _, read_key = make_api_key(tenant_a, "read")
    _, other_key = make_api_key(tenant_b, "write")
    for method in route.methods:
        response = getattr(client, method)(
            url, data={}, content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {other_key}"
        )
        assert response.status_code == 404, f"{method.upper()} {url} with another tenant's key"
        if method in UNSAFE:
            response = getattr(client, method)(
                url, data={}, content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {read_key}"
            )
            assert response.status_code == 403, f"{method.upper()} {url} with a read-only key: {response.status_code}"


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=_id)
def test_anonymous_is_sent_to_sign_in_or_refused(route, client, tenant_a, agency):
    obj = object_for(route, tenant_a, agency) if route.isolation_model() else None
    url = route.url(**values_for(route, tenant_a, agency, obj))
    response = client.get(url)
    if route.drf_cls is not None:
        assert response.status_code in (401, 403, 405)
    else:
        assert response.status_code in (302, 405)
        if response.status_code == 302:
            assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("route", [r for r in TENANT_ROUTES if not (set(r.kwargs) - {"tenant_slug"})], ids=_id)
def test_revoking_coverage_takes_effect_on_the_next_request(route, client_for, nina, coverage_a, tenant_a, agency):
    from tenants.services import coverage_revoke

    read_role, _ = route.roles()
    if "get" not in route.methods or ROLE_RANK[Role(read_role)] > ROLE_RANK[Role.AGENT]:
        return
    url = route.url(tenant_slug=tenant_a.slug)
    client = client_for(nina)
    assert client.get(url).status_code in (200, 403), url  # reached (a page may still refuse agency staff)
    coverage_revoke(coverage=coverage_a)
    assert client.get(url).status_code == 404, url


@pytest.mark.parametrize("route", AGENCY_ROUTES, ids=_id)
def test_non_members_get_404_on_agency_routes(route, client_for, charlie, alice, tenant_a, agency):
    obj = object_for(route, tenant_a, agency) if route.isolation_model() else None
    url = route.url(**values_for(route, tenant_a, agency, obj))
    for user in (charlie, alice):
        for method in route.methods:
            response = call(client_for(user), method, url, api=False)
            assert response.status_code == 404, f"{method.upper()} {url} as {user.email}"


@pytest.mark.parametrize("route", GLOBAL_ROUTES, ids=_id)
def test_global_pages_show_only_your_own_tenants(route, client_for, alice, charlie, nina, tenant_a, tenant_b):
    if "get" not in route.methods:
        return
    for user, foreign in ((charlie, tenant_a), (nina, tenant_b), (alice, tenant_b)):
        response = client_for(user).get(route.url())
        assert response.status_code < 500
        body = response.content.decode()
        assert foreign.name not in body and foreign.slug not in body, (
            f"{route.route} leaks {foreign.name} to {user.email}"
        )


WS_TENANT_ROUTES = [p for p in websocket_urlpatterns if "tenant_slug" in str(p.pattern)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pattern", WS_TENANT_ROUTES, ids=lambda p: p.name or str(p.pattern))
async def test_websocket_routes_refuse_other_tenants(pattern, charlie, tenant_a):
    from tests.tenants.test_websocket_door import connect

    path = "/" + re.sub(r"<(?:\w+:)?tenant_slug>", tenant_a.slug, str(pattern.pattern))
    communicator, connected, code = await connect(path, charlie)
    assert not connected and code == 4404
    await communicator.disconnect()  # let the consumer finish (and give back its database connection)
