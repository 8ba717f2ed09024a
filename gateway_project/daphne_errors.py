"""Errors that daphne and twisted answer themselves, in the gateway's JSON shape.

Twisted answers a request it cannot parse (a malformed request line, a header over
its size limit, broken chunked framing) with an empty ``400 Bad Request``; daphne
answers an invalid header name or value, a non-ASCII path or query string, an
exception inside the application and its own timeout with an HTML page. On the paths
programs call (``api_errors.is_machine_path``) they answer ``{"error": "..."}`` instead;
where twisted cannot know the path yet, the JSON answer is given to everyone.
"""

from __future__ import annotations

from typing import Any

from connections import wirejson
from gateway_project.api_errors import is_machine_path

BAD_REQUEST = wirejson.dumps({"error": "Bad request: the HTTP request is malformed."})


def daphne_errors_install() -> None:
    """Replace twisted's empty 400 and daphne's HTML error pages on machine paths."""
    from daphne.http_protocol import WebRequest
    from twisted.web.http import HTTPChannel

    if getattr(WebRequest, "_gateway_json_errors", False):
        return
    original_basic_error = WebRequest.basic_error

    def basic_error(self: Any, status: int, status_text: bytes, body: str) -> None:
        path = (self.path or b"").decode("latin-1") if isinstance(self.path, bytes) else ""
        if not is_machine_path(path):
            original_basic_error(self, status, status_text, body)
            return
        message = f"{status_text.decode('ascii', 'replace')}: {body}"
        self.handle_reply(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"Content-Type", b"application/json")],
            }
        )
        self.handle_reply(
            {"type": "http.response.body", "body": wirejson.dumps({"error": message})}
        )

    def respond_to_bad_request_and_disconnect(self: Any) -> None:
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(BAD_REQUEST)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + BAD_REQUEST
        )
        self.loseConnection()

    WebRequest.basic_error = basic_error
    HTTPChannel._respondToBadRequestAndDisconnect = respond_to_bad_request_and_disconnect  # type: ignore[method-assign]
    WebRequest._gateway_json_errors = True
