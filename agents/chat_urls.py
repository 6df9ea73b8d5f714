"""Web chat routes.

- ``websocket_urlpatterns``: the public chat socket. Mount it in a router branch of its own, NOT under
  ``AllowedHostsOriginValidator``/``AuthMiddlewareStack`` (the widget's page has the customer's Origin and
  no session); ``ChatConsumer`` checks the Origin against the site's allowed origins itself.
- ``urlpatterns``: the demo page (``path("", include("agents.chat_urls"))`` in contactcenter/urls.py).
"""

from django.urls import path

from agents import chat_consumers, chat_views

urlpatterns = [
    path("t/<slug:tenant_slug>/chat/<int:pk>/demo/", chat_views.chat_demo, name="chat-demo"),
]

websocket_urlpatterns = [
    path("ws/chat/<str:public_key>/", chat_consumers.ChatConsumer.as_asgi(), name="ws-chat"),
]
