"""ASGI entry point: daphne serves the web UI and API through Django, and (later) the
MCP transport through Channels consumers, all from this one application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

# Build Django first: consumers import models, which need the app registry ready.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter([re_path(r"", django_asgi_app)]),  # type: ignore[arg-type]
    }
)
