"""ASGI entry point: daphne serves the MCP transport (``/mcp/...``, routed by Channels
to ``endpoints.transport``) and everything else through Django, from one application."""

import functools
import os

from django.core.asgi import get_asgi_application
from twisted.web import http as twisted_http

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

# Under daphne, twisted parses the Content-Type of every POST with the email package to
# spot form submissions (daphne never reads them): ~70 µs, a tenth of the gateway's CPU per
# tools/call in py-spy. The answer depends only on the header's bytes: remember it.
if not hasattr(twisted_http._parseContentType, "cache_info"):
    twisted_http._parseContentType = functools.lru_cache(maxsize=64)(twisted_http._parseContentType)

# Build Django first: consumers import models, which need the app registry ready.
django_asgi_app = get_asgi_application()

from gateway_project.access_log import daphne_access_log_install  # noqa: E402
from gateway_project.body_limit import (  # noqa: E402
    BodyLimitMiddleware,
    daphne_body_limit_install,
)
from gateway_project.daphne_errors import daphne_errors_install  # noqa: E402

# Under daphne: bodies over the route's cap are refused as they arrive (body_limit.py),
# credentials in query strings never reach the access log (access_log.py), and the
# errors daphne and twisted answer themselves are JSON on machine paths (daphne_errors.py).
daphne_body_limit_install()
daphne_access_log_install()
daphne_errors_install()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from audit.recorder import recorder_start  # noqa: E402
from endpoints.transport import mcp_app  # noqa: E402

# The activity log's writer: replays what a crashed process left in the spool.
recorder_start()

application = BodyLimitMiddleware(
    ProtocolTypeRouter(
        {
            "http": URLRouter(
                [
                    re_path(r"^mcp/(?P<slug>[A-Za-z0-9_-]+)/?$", mcp_app),  # type: ignore[arg-type]
                    re_path(r"^mcp/(?P<slug>[A-Za-z0-9_-]+)/(?P<tail>sse|messages)/?$", mcp_app),  # type: ignore[arg-type]
                    re_path(r"^mcp/?$", mcp_app),  # type: ignore[arg-type]
                    re_path(r"", django_asgi_app),  # type: ignore[arg-type]
                ]
            ),
        }
    )
)
