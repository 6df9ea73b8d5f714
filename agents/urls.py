"""Pages and websocket routes for live work.

Mount with ``path("", include("agents.urls"))`` in contactcenter/urls.py and add
``*agents_websocket_urlpatterns`` (this module's ``websocket_urlpatterns``) to contactcenter/routing.py.
"""

from django.urls import path

from agents import consumers, views

urlpatterns = [
    path("console/", views.console, name="agent-console"),
    path("t/<slug:tenant_slug>/wallboard/", views.wallboard, name="tenant-wallboard"),
]

websocket_urlpatterns = [
    path("ws/console/", consumers.ConsoleConsumer.as_asgi(), name="ws-agent-console"),
    path("ws/t/<slug:tenant_slug>/wallboard/", consumers.WallboardConsumer.as_asgi(), name="ws-tenant-wallboard"),
]
