"""The user's part of the conformance suite's ``authorization`` scenarios.

``python tests/conformance/consent.py --log FILE --base URL --username NAME``
(the password in ``CONFORMANCE_PASSWORD``)

The suite prints an authorization URL and waits for the browser to come back to
its callback on 127.0.0.1. This script plays the browser: it waits for the URL in
the suite's log, signs in to the gateway, reads the consent page, allows the
client for one hour, and follows the redirect to the suite's callback. Loopback
only. Exits non-zero with the reason when any step fails.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

URL = re.compile(r"https?://[^\s\"'<>]+/o/authorize/\?[^\s\"'<>]+")


def wait_for_authorize_url(log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            found = URL.search(log.read_text(errors="replace"))
            if found:
                return found.group(0)
        time.sleep(0.2)
    raise SystemExit(f"The suite printed no authorization URL in {timeout:.0f} s ({log}).")


def consent(base: str, authorize_url: str, username: str, password: str) -> str:
    """Sign in, allow for an hour; returns the callback URL the browser was sent to."""
    with httpx.Client(base_url=base, timeout=15) as browser:
        browser.get("/accounts/login/")
        signed_in = browser.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": base},
        )
        if signed_in.status_code != 302:
            raise SystemExit("Signing in to the gateway failed.")
        page = browser.get(authorize_url)
        if page.status_code != 200 or "authorizationForm" not in page.text:
            raise SystemExit(f"No consent page (HTTP {page.status_code}): {page.text[:500]}")
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        form = {k: v.replace("&amp;", "&") for k, v in form.items()}
        form.update(duration="3600", allow="Authorize")
        answer = browser.post(authorize_url, data=form, headers={"Referer": authorize_url})
        if answer.status_code != 302:
            raise SystemExit(f"The consent was not accepted (HTTP {answer.status_code}).")
        callback = answer.headers["location"]
    host = urlsplit(callback).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"Refusing to follow a redirect off loopback: {host}")
    httpx.get(callback, timeout=15)
    return callback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    url = wait_for_authorize_url(args.log, args.timeout)
    callback = consent(args.base, url, args.username, os.environ["CONFORMANCE_PASSWORD"])
    print(f"consent given; callback {callback.split('?')[0]}", file=sys.stderr)


if __name__ == "__main__":
    main()
