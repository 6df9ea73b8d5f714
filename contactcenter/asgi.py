"""ASGI entry point: HTTP through Django (the Vonage webhooks through their own short door, see
telephony/asgi.py), websockets through Channels (session auth, origin check)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings.dev")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from contactcenter.routing import public_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402
from telephony.asgi import http_router  # noqa: E402

staff_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
application = ProtocolTypeRouter(
    {
        "http": http_router(django_asgi_app),
        "websocket": URLRouter([*public_websocket_urlpatterns, re_path(r"", staff_websockets)]),
    }
)

from contactcenter import heap  # noqa: E402
from flows.nlu import pin_single_thread_blas  # noqa: E402

pin_single_thread_blas()  # many small predictions at once: worker threads only spin (flows/nlu.py)

heap.freeze("asgi application loaded")
