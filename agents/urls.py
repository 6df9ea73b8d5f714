"""Pages and websocket routes for live work.

Mount with ``path("", include("agents.urls"))`` in contactcenter/urls.py and add
``*agents_websocket_urlpatterns`` (this module's ``websocket_urlpatterns``) to contactcenter/routing.py.
"""

from django.urls import path

from agents import consumers, views, voicemail_views

urlpatterns = [
    path("console/", views.console, name="agent-console"),
    path("t/<slug:tenant_slug>/wallboard/", views.wallboard, name="tenant-wallboard"),
    path("t/<slug:tenant_slug>/voicemails/", voicemail_views.voicemail_list, name="tenant-voicemails"),
    path(
        "t/<slug:tenant_slug>/voicemails/<int:pk>/recording",
        voicemail_views.voicemail_recording,
        name="tenant-voicemail-recording",
    ),
    path(
        "t/<slug:tenant_slug>/voicemails/<int:pk>/handle/",
        voicemail_views.voicemail_handle_view,
        name="tenant-voicemail-handle",
    ),
    path(
        "t/<slug:tenant_slug>/voicemails/<int:pk>/callback/",
        voicemail_views.voicemail_callback_view,
        name="tenant-voicemail-callback",
    ),
]

websocket_urlpatterns = [
    path("ws/console/", consumers.ConsoleConsumer.as_asgi(), name="ws-agent-console"),
    path("ws/t/<slug:tenant_slug>/wallboard/", consumers.WallboardConsumer.as_asgi(), name="ws-tenant-wallboard"),
]
